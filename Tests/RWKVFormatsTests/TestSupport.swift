import Foundation

/// The repository's fixtures/ folder.
let fixturesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("fixtures").path

/// A fresh directory removed when the value is released.
final class TemporaryDirectory {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "rwkv-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ name: String, bytes: [UInt8]) throws -> String {
        let p = path + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    func write(_ name: String, safetensorsHeader header: String, data: [UInt8]) throws -> String {
        let h = Array(header.utf8)
        return try write(name, bytes: withUnsafeBytes(of: UInt64(h.count).littleEndian, Array.init) + h + data)
    }
}
