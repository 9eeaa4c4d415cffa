import ArgumentParser
import Foundation
import RWKVCommandLine
import RWKVConvert
import RWKVFormats
import RWKVText
import RWKVModel

struct RWKVConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rwkv-convert",
        abstract: "Inspect RWKV-6/RWKV-7 checkpoints and convert them to GGUF for llama.cpp.",
        subcommands: [Inspect.self, ToGGUF.self, PthToNative.self, SafetensorsToNative.self, HFToNative.self, ToHF.self, ToPth.self, IMatrix.self])
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a checkpoint's format, architecture and tensors (reads headers only).")

    @Argument(help: "A .pth (torch zip), .safetensors or .gguf file, or a Hugging Face model folder.")
    var file: String

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        let report = InspectReport(source: try Checkpoint.open(file))
        print(json ? try RWKVCommandLine.json(report) : report.text)
        // The report is still printed, but a file that is no RWKV model is bad input (exit 2).
        if let error = report.unusableModelError { throw error }
    }
}

extension OutputType: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
}

/// `--type`: one of our types, or a llama-quantize preset name (Q4_K_M ...), in any case.
struct TypeChoice: ExpressibleByArgument {
    let type: OutputType
    let preset: LlamaPreset?

    init(type: OutputType) { self.type = type; preset = nil }

    init?(argument: String) {
        if let t = OutputType(name: argument) {
            type = t; preset = nil
        } else if let p = LlamaPreset(name: argument) {
            type = p.baseType; preset = p
        } else {
            return nil
        }
    }

    static var allValueStrings: [String] { OutputType.allCases.map(\.rawValue) + LlamaPreset.allCases.map(\.rawValue) }
}

/// Options shared by the two conversion commands.
struct ConversionArguments: ParsableArguments {
    @Argument(help: "The GGUF file to write.")
    var output: String

    @Option(help: "Type of the large matrices (everything else stays F32, as llama.cpp expects), or a llama-quantize preset name (Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q3_K_L ...): per-tensor types as llama-quantize chooses them for RWKV.")
    var type: TypeChoice = TypeChoice(type: .f16)

    @Option(help: "A World-format vocabulary file (default: the bundled World vocabulary for 65536-row models, byte tokens otherwise).")
    var vocab: String?

    @Option(help: "Threads for encoding (the default is the number of cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .customLong("output-tensor-type"),
            help: "Type of the output matrix (the head). Default for quantized types: q6_K (q8_0 for q8_0, or when its rows are not whole 256-value blocks), as llama.cpp's quantizer keeps it at higher precision; --type otherwise.")
    var outputTensorType: OutputType?

    @Option(name: .customLong("token-embedding-type"), help: "Type of \(LlamaTensorTypes.tokenEmbeddingName), as llama-quantize's option.")
    var tokenEmbeddingType: OutputType?

    @Option(name: .customLong("tensor-type"),
            help: "PATTERN=TYPE: tensors whose GGUF name the regular expression matches get TYPE (first match wins; quantized types only), as llama-quantize's option. Repeatable.")
    var tensorType: [String] = []

    @Option(name: .customLong("keep-f32"), help: "Keep matching GGUF tensors in F32 (a glob, or a substring of the name). Repeatable.")
    var keepF32: [String] = []

    @Option(help: "general.name to record (default: the input file name).")
    var name: String?

    @Flag(help: "Flush the output to disk before moving it into place, so a power cut cannot leave it short (slower).")
    var sync = false

    @OptionGroup var adapters: AdapterArguments

    @Option(help: ArgumentHelp("An importance matrix (ours from `rwkv-convert imatrix`, or llama-imatrix's GGUF or .dat): the k-quants, iq4_nl and q4_0..q5_1 weigh each column's error by it, as llama-quantize --imatrix.", valueName: "file"))
    var imatrix: String?

    @Flag(name: .customLong("allow-non-finite"),
          help: "Convert NaN and infinite weights as they are (a warning names the tensors) instead of refusing the checkpoint.")
    var allowNonFinite = false

    @Flag(help: "Print a JSON summary (every tensor's name, type, shape and bytes; totals; time; overflows).")
    var json = false

    func validate() throws {
        guard (1...ConversionOptions.maxThreads).contains(threads) else {
            throw ValidationError("--threads must be between 1 and \(ConversionOptions.maxThreads)")
        }
    }

    func convert(_ input: String, expecting format: ModelFormat?) throws {
        do {
            var options = ConversionOptions()
            options.type = type.type
            options.preset = type.preset
            options.tokenEmbeddingType = tokenEmbeddingType
            options.tensorTypes = try tensorType.map { try TensorTypeRule(argument: $0) }
            guard options.tensorTypes.isEmpty || options.type.dtype.isQuantized else {
                throw RWKVError(nil, "--tensor-type needs a quantized --type (llama-quantize applies it only then)")
            }
            options.vocabularyPath = vocab
            options.threads = threads
            options.keepF32 = keepF32
            options.outputTensorType = outputTensorType
            options.name = name
            options.expectedFormat = format
            options.sync = sync
            options.adapters = adapters.list
            options.imatrixPath = imatrix
            options.allowNonFinite = allowNonFinite
            let bar = ProgressBar(total: 1, label: "converting")
            options.progress = bar.callback
            defer { bar.finish() }
            let report = try Converter.convert(input: input, output: output, options: options)
            bar.finish()
            if let warning = report.nonFiniteWarning { RWKVCommandLine.warn(warning) }
            print(json ? try RWKVCommandLine.json(report) : report.text)
        }
    }
}

struct PthToNative: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pth-to-native",
        abstract: "Convert an official RWKV-6/7 .pth checkpoint into GGUF that llama.cpp runs.")

    @Argument(help: "The .pth checkpoint (torch zip).")
    var input: String

    @OptionGroup var options: ConversionArguments

    func run() throws { try options.convert(input, expecting: .torchZip) }
}

struct SafetensorsToNative: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "safetensors-to-native",
        abstract: "Convert an RWKV-6/7 .safetensors checkpoint (BlinkDL names) into GGUF that llama.cpp runs.")

    @Argument(help: "The .safetensors checkpoint.")
    var input: String

    @OptionGroup var options: ConversionArguments

    func run() throws { try options.convert(input, expecting: .safetensors) }
}

struct ToGGUF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "to-gguf",
        abstract: "Convert any supported RWKV-6/7 checkpoint (.pth, .safetensors, Hugging Face folder) into GGUF that llama.cpp runs.")

    @Argument(help: "The checkpoint: a .pth, a .safetensors with BlinkDL names, or a Hugging Face model folder.")
    var input: String

    @OptionGroup var options: ConversionArguments

    func run() throws { try options.convert(input, expecting: nil) }
}

struct HFToNative: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hf-to-native",
        abstract: "Convert a Hugging Face RWKV model folder (fla-hub RWKV-7, HF RWKV-6) into GGUF that llama.cpp runs.")

    @Argument(help: "The folder: config.json with model.safetensors, sharded model-*.safetensors + index, or pytorch_model.bin.")
    var input: String

    @OptionGroup var options: ConversionArguments

    func run() throws { try options.convert(input, expecting: .huggingFaceFolder) }
}

/// What to-hf and to-pth share: any checkpoint in, one output, adapters, JSON.
struct ExportArguments: ParsableArguments {
    @Argument(help: "The checkpoint: .pth, .safetensors, .gguf or a Hugging Face folder.")
    var input: String

    @Argument(help: "What to write: a new folder (to-hf) or a .pth (to-pth).")
    var output: String

    @OptionGroup var adapters: AdapterArguments

    @Flag(help: "Print a JSON summary.")
    var json = false

    func run(_ label: String,
             _ export: (String, String, AdapterList, ((Int, Int, String) -> Void)?) throws -> Export.Report) throws {
        let bar = ProgressBar(total: 1, label: label)
        defer { bar.finish() }
        let report = try export(input, output, adapters.list, bar.callback)
        bar.finish()
        print(json ? try RWKVCommandLine.json(report) : report.text)
    }
}

struct ToHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "to-hf",
        abstract: "Write a Hugging Face folder (fla-hub RWKV-7, HF RWKV-6: model.safetensors, config.json) from any supported checkpoint.")

    @OptionGroup var options: ExportArguments

    func run() throws { try options.run("to-hf", Export.toHuggingFace) }
}

struct ToPth: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "to-pth",
        abstract: "Write a BlinkDL .pth (what the official trainer and rwkv package load) from any supported checkpoint.")

    @OptionGroup var options: ExportArguments

    func run() throws { try options.run("to-pth", Export.toPth) }
}

struct IMatrix: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imatrix",
        abstract: "Compute an importance matrix over a text, as llama-imatrix does, in its GGUF format.",
        discussion: "Runs our forward pass over the text in chunks and sums, per input column of every weight matrix llama-imatrix collects, the squared activations (<tensor>.in_sum2) and the token count (<tensor>.counts).")

    @Argument(help: "The model: .pth, .safetensors, .gguf or a Hugging Face folder.")
    var model: String

    @Option(help: "The calibration text (World tokenizer for 65536-row models, bytes for byte-level ones).")
    var text: String

    @Option(name: .shortAndLong, help: "The importance matrix to write (GGUF, e.g. model.imatrix.gguf).")
    var output: String

    @Option(help: "Tokens per chunk (llama-imatrix's -c).")
    var chunk: Int = TextChunks.defaultSize

    @Option(help: "Use at most this many chunks.")
    var chunks: Int?

    @Flag(help: "Also collect the output matrix (the head), as llama-imatrix --process-output.")
    var processOutput = false

    @Option(help: "A World-format vocabulary file (default: the bundled one for 65536-row models).")
    var vocab: String?

    @Flag(help: "Print a JSON summary.")
    var json = false

    func run() throws {
        let bar = ProgressBar(total: 1, label: "imatrix")
        defer { bar.finish() }
        let report = try ImportanceMatrixRun.run(model: model, text: text, output: output, chunkSize: chunk, maxChunks: chunks,
                                                 processOutput: processOutput, vocabularyPath: vocab, progress: bar.callback)
        bar.finish()
        print(json ? try RWKVCommandLine.json(report) : report.summary)
    }
}

// Conversion does no matrix work: free the core OpenBLAS's idle threads would spin on.
OpenBLAS.stopIdleThreads()
RWKVCommandLine.main(RWKVConvertCommand.self)
