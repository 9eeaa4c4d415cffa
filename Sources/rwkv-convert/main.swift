import ArgumentParser
import Foundation
import RWKVConvert
import RWKVFormats

struct RWKVConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rwkv-convert",
        abstract: "Inspect RWKV-6/RWKV-7 checkpoints and convert them to GGUF for llama.cpp.",
        subcommands: [Inspect.self])
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a checkpoint's format, architecture and tensors (reads headers only).")

    @Argument(help: "A .pth (torch zip), .safetensors or .gguf file.")
    var file: String

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        try runReportingErrors {
            let report = InspectReport(source: try ModelFile.open(file))
            print(json ? try jsonString(report) : report.text)
            // The report is still printed, but a file that is no RWKV model is bad input (exit 2).
            if let error = report.unusableModelError { throw error }
        }
    }
}

RWKVConvertCommand.main()
