import Foundation
import Synchronization
@testable import RWKVConvert
import RWKVFormats

/// Paths of the committed fixtures and a scratch directory for conversion outputs.
enum ConversionFiles {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static func fixture(_ name: String) -> String { root + "/fixtures/models/" + name }

    /// A fresh directory; removed by `ScratchDirectory.deinit`.
    final class ScratchDirectory: Sendable {
        let path: String
        init() throws {
            path = NSTemporaryDirectory() + "rwkv-convert-tests-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
        var files: [String] { (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] }
    }

    /// Each fixture converted once per test process to each type (conversions are shared by
    /// the tests that only read them; the debug build makes each take a fraction of a second).
    static func converted(_ model: String, _ type: OutputType) throws -> String {
        try conversion(model, type).path
    }

    static func conversion(_ model: String, _ type: OutputType) throws -> (path: String, report: ConversionReport) {
        let key = "\(model).\(type)"
        // One slot per output, so different conversions run in parallel and each runs once.
        let slot = slots.withLock { slots in
            if let s = slots[key] { return s }
            let s = Slot()
            slots[key] = s
            return s
        }
        return try slot.done.withLock { done in
            if let done { return done }
            let p = sharedDirectory.path + "/" + key + ".gguf"
            let result = (p, try convert(fixture(model), to: p, type: type))
            done = result
            return result
        }
    }
    private final class Slot: Sendable {
        let done = Mutex<(path: String, report: ConversionReport)?>(nil)
    }
    /// Lives for the whole test process; a static is never deinitialised, so it is removed at exit.
    private static let sharedDirectory: ScratchDirectory = {
        let dir = try! ScratchDirectory()
        sharedPath.withLock { $0 = dir.path }
        atexit { ConversionFiles.sharedPath.withLock { if let p = $0 { try? FileManager.default.removeItem(atPath: p) } } }
        return dir
    }()
    private static let sharedPath = Mutex<String?>(nil)
    private static let slots = Mutex<[String: Slot]>([:])

    /// Converts quietly (no progress bar) with the given type.
    static func convert(_ input: String, to output: String, type: OutputType, keepF32: [String] = [],
                        vocabulary: String? = nil) throws -> ConversionReport {
        var options = ConversionOptions()
        options.type = type
        options.keepF32 = keepF32
        options.vocabularyPath = vocabulary
        return try Converter.convert(input: input, output: output, options: options)
    }
}
