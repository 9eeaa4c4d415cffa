import Foundation
import Testing
@testable import RWKVFormats

/// Where outputs may go (issue 9, class 7): never replace what is not a regular file, keep the
/// temporary name short, write through symbolic links.
struct OutputFileTests {
    @Test func refusesDevicesAndFIFOsWithoutTouchingThem() throws {
        #expect(throws: RWKVError("/dev/null", "exists and is not a regular file (a character device); give an output file name (outputs are written to a temporary file and renamed into place)")) {
            _ = try AtomicOutputFile("/dev/null", durable: false)
        }
        let dir = try TemporaryDirectory()
        let fifo = dir.path + "/fifo"
        #expect(mkfifo(fifo, 0o644) == 0)
        #expect(throws: RWKVError.self) { _ = try AtomicOutputFile(fifo, durable: false) }
        var st = stat()
        #expect(stat(fifo, &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO)   // still a FIFO
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["fifo"])   // no temporary left
    }

    /// NAME_MAX is 255 bytes; the temporary name must not need more than the output's.
    @Test func aLegal255ByteNameWorks() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/" + String(repeating: "n", count: 250) + ".gguf"
        let out = try AtomicOutputFile(path, durable: false)
        #expect((out.temporaryPath ?? "").split(separator: "/").last.map(\.utf8.count) ?? 0 <= 12)   // nil: unnamed (O_TMPFILE)
        try out.write([1, 2, 3])
        try out.commit()
        #expect(FileManager.default.contents(atPath: path) == Data([1, 2, 3]))
    }

    /// A symbolic link (/dev/stdout redirected to a file is one) is written through, like cp.
    @Test func writesThroughSymbolicLinks() throws {
        let dir = try TemporaryDirectory()
        let target = try dir.write("target.bin", bytes: [9])
        let link = dir.path + "/link.bin"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        let out = try AtomicOutputFile(link, durable: false)
        try out.write([4, 5])
        try out.commit()
        #expect(FileManager.default.contents(atPath: target) == Data([4, 5]))
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == target)   // still a link
    }
}

/// File names that are not UTF-8 (issue 9, class 6): kept byte for byte from argv to the system.
struct BytePathTests {
    static let latin1Name: [UInt8] = Array("caf".utf8) + [0xe9] + Array(".safetensors".utf8)

    @Test func bytesThatAreNotUTF8SurviveTheRoundTrip() {
        let path = BytePath.decode(Self.latin1Name)
        #expect(BytePath.encode(path).dropLast().map { UInt8(bitPattern: $0) } == Self.latin1Name)
        #expect(Printable.escaped(path) == "caf\\xe9.safetensors")
        #expect(BytePath.decode(Array("café".utf8)) == "café")   // valid UTF-8 is left alone
    }

    @Test func aNonUTF8NameOpensAndIsWritten() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/" + BytePath.decode(Self.latin1Name)
        let out = try AtomicOutputFile(path, durable: false)
        try SafetensorsWriter.writeTestTensor(out)
        try out.commit()
        #expect(BytePath.with(path) { access($0, F_OK) } == 0)   // exactly these bytes on disk
        let source = try ModelFile.open(path)
        #expect(source.tensors.map(\.name) == ["a"])
        #expect(try source.data("a") == [0, 0, 128, 63])
    }
}

extension SafetensorsWriter {
    /// One f32 tensor "a" = [1.0] (a header written by hand, as in the safetensors format spec).
    static func writeTestTensor(_ out: AtomicOutputFile) throws {
        let header = Array(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.utf8)
        var length = UInt64(header.count).littleEndian
        try out.write(withUnsafeBytes(of: &length) { Array($0) } + header + [0, 0, 128, 63])
    }
}
