#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
/// What a file is, judged by its first bytes, and the reader that opens it.
public enum ModelFormat: String, Sendable {
    case torchZip = "torch zip (.pth)"
    case legacyTorch = "legacy torch pickle (.pth before torch 1.6)"
    case safetensors = "safetensors"
    case gguf = "GGUF"
    /// A directory: config.json and weight files (RWKVModel's `HuggingFaceFolder` reads it).
    case huggingFaceFolder = "Hugging Face folder"

    /// The format of a path: a directory is a Hugging Face folder, a file is sniffed.
    public static func detect(path: String) throws -> ModelFormat {
        var st = stat()
        if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { return .huggingFaceFolder }
        return try detect(try InputFile(path))
    }

    /// Sniffs the format from the file's first bytes.
    public static func detect(_ file: InputFile) throws -> ModelFormat {
        let head = try file.prefix(16)
        if head.isEmpty { throw RWKVError(file.path, "file is empty") }
        if head.starts(with: [0x50, 0x4b, 0x03, 0x04]) || head.starts(with: [0x50, 0x4b, 0x05, 0x06]) { return .torchZip }
        if head.starts(with: Array("GGUF".utf8)) { return .gguf }
        // Protocol-2 pickle whose first value is torch's legacy magic number 0x1950a86a20f9469cfc6c.
        if head.starts(with: [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]) {
            return .legacyTorch
        }
        if head.count >= 9, head[8] == UInt8(ascii: "{") { return .safetensors }
        throw RWKVError(file.path, "unrecognised file format (not a torch zip .pth, safetensors or GGUF file)")
    }
}

public enum ModelFile {
    /// Opens any supported checkpoint with the reader its format needs.
    public static func open(_ path: String) throws -> TensorSource {
        let file = try InputFile(path)
        switch try ModelFormat.detect(file) {
        case .safetensors:
            return try SafetensorsReader(path: path)
        case .legacyTorch:
            throw RWKVError(path, "legacy (pre-zip) torch file: re-save it with torch >= 1.6 (torch.save with the default zip format)")
        case .torchZip:
            return try TorchArchive(path: path)
        case .gguf:
            return try GGUFReader(path: path)
        case .huggingFaceFolder:
            throw RWKVError(path, "is a folder, not a model file")   // detect(file) never says so
        }
    }
}
