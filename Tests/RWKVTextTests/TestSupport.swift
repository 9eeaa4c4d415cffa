import Foundation

/// The repository root (fixtures/ lives there).
let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// A fresh directory, removed when released.
final class ScratchDirectory {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "rwkv-text-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
