import Foundation
import Testing

/// SHA-256 of many byte strings at once, for checking tensors against fixtures/manifest.json
/// (which records the SHA-256 of each tensor's float32 values). It runs coreutils `sha256sum`
/// once over files in a temporary directory: a Swift SHA-256 compiled without optimisation (as
/// `swift test` builds) needs seconds for the fixture models, the C one milliseconds.
/// (Files are written with fwrite: Foundation's Data.write is ten times slower here.)
enum TestSHA256 {
    static func hex(_ blobs: [[UInt8]]) throws -> [String] {
        try hex(count: blobs.count) { i, file in blobs[i].withUnsafeBytes { _ = fwrite($0.baseAddress, 1, $0.count, file) } }
    }

    static func hex(floats: [[Float]]) throws -> [String] {
        try hex(count: floats.count) { i, file in floats[i].withUnsafeBytes { _ = fwrite($0.baseAddress, 1, $0.count, file) } }
    }

    private static func hex(count: Int, _ write: (Int, UnsafeMutablePointer<FILE>) -> Void) throws -> [String] {
        let dir = try TemporaryDirectory()
        let names = try (0..<count).map { i in
            let path = dir.path + "/\(i)"
            let file = try #require(fopen(path, "wb"))
            write(i, file)
            try #require(fclose(file) == 0)
            return path
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = names
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "sha256sum failed")
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n")
        try #require(lines.count == count)
        return lines.map { String($0.prefix(64)) }
    }
}

@Suite struct TestSHA256Tests {
    @Test func knownDigests() throws {
        // hashlib.sha256 of b"", b"abc" and b"a"*1000.
        #expect(try TestSHA256.hex([[], Array("abc".utf8), [UInt8](repeating: 0x61, count: 1000)]) == [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3",
        ])
    }
}
