import Foundation
import Testing
import RWKVFormats

/// Opt-in (scripts/interop.sh sets RWKV_INTEROP_DIR): for every `X.gguf` there, gguf-py's reader
/// and `gguf.quants.dequantize` wrote the values of every tensor to `X.gguf.gguf-py.safetensors`;
/// our reader must give exactly the same values (bit for bit) and the same shapes.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["RWKV_INTEROP_DIR"] != nil,
                "set RWKV_INTEROP_DIR (scripts/interop.sh does)"))
struct GGUFInteropTests {
    @Test func ourReaderMatchesGGUFPy() throws {
        let dir = ProcessInfo.processInfo.environment["RWKV_INTEROP_DIR"]!
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".gguf") }.sorted()
        #expect(!files.isEmpty, "no .gguf files in \(dir)")
        var compared = 0
        for file in files {
            let ours = try GGUFReader(path: dir + "/" + file)
            let theirs = try SafetensorsReader(path: dir + "/" + file + ".gguf-py.safetensors")
            #expect(Set(theirs.tensors.map(\.name)) == Set(ours.tensors.map(\.name)), "\(file)")
            for t in ours.tensors {
                #expect(theirs.info(t.name)?.shape == t.shape, "\(file) \(t.name)")
                let a = try ours.floats(t.name).map(\.bitPattern), b = try theirs.floats(t.name).map(\.bitPattern)
                #expect(a == b, "\(file) \(t.name): values differ from gguf.quants.dequantize")
                compared += 1
            }
        }
        print("GGUFInteropTests: \(compared) tensors in \(files.count) files equal gguf-py's values")
    }
}
