import ArgumentParser
import Foundation
import RWKVCommandLine
import RWKVConvert
import RWKVFormats
import RWKVModel

struct RWKVConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rwkv-convert",
        abstract: "Inspect RWKV-6/RWKV-7 checkpoints and convert them to GGUF for llama.cpp.",
        subcommands: [Inspect.self, PthToNative.self, SafetensorsToNative.self])
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a checkpoint's format, architecture and tensors (reads headers only).")

    @Argument(help: "A .pth (torch zip), .safetensors or .gguf file.")
    var file: String

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        let report = InspectReport(source: try ModelFile.open(file))
        print(json ? try RWKVCommandLine.json(report) : report.text)
        // The report is still printed, but a file that is no RWKV model is bad input (exit 2).
        if let error = report.unusableModelError { throw error }
    }
}

extension OutputType: ExpressibleByArgument {}

/// Options shared by the two conversion commands.
struct ConversionArguments: ParsableArguments {
    @Argument(help: "The GGUF file to write.")
    var output: String

    @Option(help: "Type of the large matrices (everything else stays F32, as llama.cpp expects).")
    var type: OutputType = .f16

    @Option(help: "A World-format vocabulary file (default: the bundled World vocabulary for 65536-row models, byte tokens otherwise).")
    var vocab: String?

    @Option(help: "Threads for encoding (the default is the number of cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .customLong("output-tensor-type"),
            help: "Type of the output matrix (the head). Default: q8_0 for the 4- and 5-bit types, as llama.cpp's quantizer keeps it at higher precision; --type otherwise.")
    var outputTensorType: OutputType?

    @Option(name: .customLong("keep-f32"), help: "Keep matching GGUF tensors in F32 (a glob, or a substring of the name). Repeatable.")
    var keepF32: [String] = []

    @Option(help: "general.name to record (default: the input file name).")
    var name: String?

    @Flag(help: "Flush the output to disk before moving it into place, so a power cut cannot leave it short (slower).")
    var sync = false

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

    func convert(_ input: String, expecting format: ModelFormat) throws {
        do {
            var options = ConversionOptions()
            options.type = type
            options.vocabularyPath = vocab
            options.threads = threads
            options.keepF32 = keepF32
            options.outputTensorType = outputTensorType
            options.name = name
            options.expectedFormat = format
            options.sync = sync
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

// Conversion does no matrix work: free the core OpenBLAS's idle threads would spin on.
OpenBLAS.stopIdleThreads()
RWKVCommandLine.main(RWKVConvertCommand.self)
