// Opens a checkpoint, prints its configuration, converts it to q8_0 GGUF and runs 8 tokens through
// the forward pass of both files:  swift run rwkv-example MODEL OUT.gguf
import Foundation
import RWKVConvert
import RWKVFormats
import RWKVModel

let arguments = CommandLine.arguments
guard arguments.count == 3 else {
    FileHandle.standardError.write("usage: rwkv-example MODEL OUT.gguf\n".data(using: .utf8)!)
    exit(2)
}
do {
    let source = try Checkpoint.open(arguments[1])          // .pth, .safetensors, GGUF or a folder
    let config = try RWKVConfig.detect(source)
    print("RWKV-\(config.eagle?.rawValue ?? String(config.version.rawValue)): \(config.layerCount) layers, "
          + "n_embd \(config.embeddingSize), head size \(config.headSize), vocab \(config.vocabSize)")

    var options = ConversionOptions()
    options.type = .q8_0
    let report = try Converter.convert(input: arguments[1], output: arguments[2], options: options)
    print("wrote \(arguments[2]): \(report.tensors.count) tensors, \(report.fileBytes) bytes")

    let tokens = Array("The RWKV".utf8).map(Int.init)       // 8 byte tokens
    for path in [arguments[1], arguments[2]] {
        let model = try RWKVModelLoader.load(path: path)
        let logits = try model.logits(tokens, mode: .sequence)
        let last = logits.rows[tokens.count - 1]
        let best = last.indices.max { last[$0] < last[$1] }!
        print("\((path as NSString).lastPathComponent): after \(tokens.count) tokens the most likely next token is \(best)")
    }
} catch let error as RWKVError {
    FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
    exit(2)
}
