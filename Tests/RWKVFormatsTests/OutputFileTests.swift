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
        #expect(out.temporaryPath.split(separator: "/").last!.utf8.count <= 12)
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
