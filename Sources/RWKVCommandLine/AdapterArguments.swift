import ArgumentParser
import RWKVModel

/// `--merge-lora` and its companions, shared by rwkv-convert and rwkv-upgrade: RWKV-PEFT
/// adapters merged into the checkpoint before anything else reads it.
public struct AdapterArguments: ParsableArguments {
    @Option(name: .customLong("merge-lora"), help: ArgumentHelp("An RWKV-PEFT LoRA (or, with --pissa-init, PiSSA) adapter .pth to merge into the checkpoint first. Repeatable: applied in order.", valueName: "adapter"))
    var mergeLoRA: [String] = []

    @Option(name: .customLong("lora-alpha"), help: "LoRA alpha (scale alpha/r): once for all adapters or once per adapter (default 16, RWKV-PEFT's).")
    var loraAlpha: [Float] = []

    @Option(name: .customLong("pissa-init"), help: ArgumentHelp("The initial PiSSA adapter of each --merge-lora adapter, in order (makes them PiSSA merges).", valueName: "adapter"))
    var pissaInit: [String] = []

    public init() {}

    public var list: AdapterList { AdapterList(paths: mergeLoRA, alphas: loraAlpha, pissaInitials: pissaInit) }
}
