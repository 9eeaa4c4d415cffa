import ArgumentParser
import Foundation
import RWKVCommandLine
import RWKVFormats
import RWKVModel
import RWKVUpgrade

/// The `preserve` recipe's settings for experiments (scripts/upgrade_ablation.py,
/// scripts/upgrade-training.sh): what each mapping is worth, and the alternatives measured in
/// docs/upgrade.md. Not a product: users get rwkv-upgrade, whose defaults these measured.
struct UpgradeLab: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade-lab",
        abstract: "rwkv-upgrade v6-to-v7 with the preserve recipe's experiment settings (not for users).")

    @Argument(help: "The RWKV-6 checkpoint.")
    var input: String

    @Argument(help: "The RWKV-7 checkpoint to write (.pth or .safetensors).")
    var output: String

    @Option(help: "paper or preserve.")
    var recipe: String = "preserve"

    @Option(help: "The calibration text (default: the built-in one).")
    var calibrate: String?

    @Flag(name: .customLong("no-calibrate"), help: "Fit on the Gaussian stand-in.")
    var noCalibrate = false

    @Option(name: .customLong("fit-tokens"), help: "Tokens the fits run over.")
    var fitTokens: Int?

    @Option(name: .customLong("ablate"), help: "Put a mapping back to its plain counterpart (\(PreserveMapping.allCases.map(\.rawValue).joined(separator: ", "))); repeatable.")
    var ablate: [String] = []

    @Option(name: .customLong("off-bias"), help: "a0 and v0 (default -5).")
    var offBias: Float?

    @Option(name: .customLong("shift-compensation"), help: "on|off: divide receptance by the mean decay.")
    var shiftCompensation: String?

    @Option(name: .customLong("gate-spread"), help: "One gate unit input spread instead of the search.")
    var gateSpread: Float?

    @Option(name: .customLong("gate-refine"), help: "Gradient steps on the gate fit (default 30).")
    var gateRefine: Int?

    @Option(name: .customLong("fits-on"), help: "upgraded (default): the fits' RWKV-7 side reads the upgraded blocks' inputs; rwkv6: the RWKV-6's.")
    var fitsOn: String = "upgraded"

    @Option(name: .customLong("gate-ridge"), help: "Ridge of the gate's g2 solve.")
    var gateRidge: Double?

    @Option(name: .customLong("gate-target-rank"), help: "Principal directions of the gate's target its search sees (default 2 x rank).")
    var gateTargetRank: Int?

    @Option(help: "OpenBLAS threads.")
    var threads: Int?

    @Flag(help: "Print the JSON report.")
    var json = false

    func run() throws {
        var options = UpgradeOptions()
        guard let recipe = UpgradeRecipeName(rawValue: recipe) else { throw RWKVError(nil, "--recipe takes paper or preserve") }
        options.recipe = recipe
        if noCalibrate && calibrate != nil { throw RWKVError(nil, "give --calibrate FILE or --no-calibrate, not both") }
        options.calibration = noCalibrate ? .standIn : calibrate.map(CalibrationSource.file)
        if let fitTokens { options.fitTokens = fitTokens }
        options.ablations = Set(try ablate.map { name in
            guard let mapping = PreserveMapping(rawValue: name) else {
                throw RWKVError(nil, "--ablate takes one of \(PreserveMapping.allCases.map(\.rawValue).joined(separator: ", ")), not \(Printable.escaped(name, limit: 64))")
            }
            return mapping
        })
        if let offBias { options.switchedOffBias = offBias }
        if let shiftCompensation {
            guard ["on", "off"].contains(shiftCompensation) else { throw RWKVError(nil, "--shift-compensation takes on or off") }
            options.compensateDecayShift = shiftCompensation == "on"
        }
        if let gateSpread { options.gateUnitSpreads = [gateSpread] }
        if let gateRefine { options.gateRefineSteps = gateRefine }
        guard ["upgraded", "rwkv6"].contains(fitsOn) else { throw RWKVError(nil, "--fits-on takes upgraded or rwkv6") }
        options.fitsOnUpgradedInputs = fitsOn == "upgraded"
        if let threads { OpenBLAS.setThreads(threads) }
        if let gateRidge { options.gateRidge = gateRidge }
        options.gateTargetRank = gateTargetRank
        let report = try Upgrade.run(input: input, output: output, options: options, dtype: .bf16)
        print(json ? try RWKVCommandLine.json(report) : report.summary)
    }
}

RWKVCommandLine.main(UpgradeLab.self)
