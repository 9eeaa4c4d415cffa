import Foundation
import RWKVFormats
import RWKVModel
import RWKVConvert

// libFuzzer entry point (built only by `make fuzz`: swift build -Xswiftc -sanitize=fuzzer).
// RWKV_FUZZ_TARGET chooses what the input is fed to:
//   pickle       the restricted pickle interpreter (the input is data.pkl)
//   zip          a torch zip archive: libzip, our record checks, every tensor read
//   safetensors  a safetensors file: header, offsets, every tensor read
//   gguf         a GGUF file: header, metadata, tensor table, the canonical RWKV view
//   detect       any file: format sniffing, reading, architecture detection, inspect's report
// Every error must be an RWKVError or PickleError; a trap, a sanitizer report, a leak or a
// memory flood (libFuzzer's -rss_limit_mb, -malloc_limit_mb) is a crash.

let target = ProcessInfo.processInfo.environment["RWKV_FUZZ_TARGET"] ?? "detect"
let scratch = "/dev/shm/rwkv-fuzz-\(getpid())" + (target == "safetensors" ? ".safetensors" : target == "gguf" ? ".gguf" : ".pth")

func readAll(_ source: TensorSource) {
    for t in source.tensors { _ = try? source.data(t.name) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if target == "pickle" {
        _ = try? Pickle.load(bytes)
        return 0
    }
    guard FileManager.default.createFile(atPath: scratch, contents: Data(bytes)) else { return 0 }
    defer { unlink(scratch) }
    switch target {
    case "zip":
        if let archive = try? TorchArchive(path: scratch) { readAll(archive) }
    case "safetensors":
        if let reader = try? SafetensorsReader(path: scratch) { readAll(reader) }
    case "gguf":
        if let reader = try? GGUFReader(path: scratch) {
            readAll(reader)
            if let view = try? GGUFCanonicalSource(reader) { readAll(view) }
        }
    default:
        if let source = try? ModelFile.open(scratch) {
            _ = try? RWKVConfig.detect(source)
            _ = InspectReport(source: source).text
        }
    }
    return 0
}

// SwiftPM links an executable's entry point as `rwkv_fuzz_main` (and defines main to it), so
// libFuzzer's own main is not pulled in: this one hands over to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(_ argc: UnsafeMutablePointer<CInt>,
               _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
               _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("rwkv_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var vector = argv
    return runDriver(&count, &vector) { data, size in fuzz(data, size) }
}
