/// LoRA ranks of an RWKV-7 model: decay (w1/w2), in-context learning rate (a1/a2),
/// value residual (v1/v2) and gate (g1/g2).
public struct RWKV7Ranks: Codable, Equatable, Sendable {
    public var decay: Int
    public var iclr: Int
    public var valueResidual: Int
    public var gate: Int

    public init(decay: Int, iclr: Int, valueResidual: Int, gate: Int) {
        self.decay = decay
        self.iclr = iclr
        self.valueResidual = valueResidual
        self.gate = gate
    }

    /// Ranks of the official RWKV-7 World models, by n_embd. Read from the published model
    /// configurations (Hugging Face `config.json`: decay_low_rank_dim, a_low_rank_dim,
    /// v_low_rank_dim, gate_low_rank_dim), which mirror the shapes in the BlinkDL .pth files:
    ///   0.1B  12×768   fla-hub/rwkv7-0.1B-world, RWKV/RWKV7-Goose-Pile-168M-HF
    ///   0.4B  24×1024  fla-hub/rwkv7-0.4B-world / -g1
    ///   1.5B  24×2048  RWKV/RWKV7-Goose-World3-1.5B-HF
    ///   2.9B  32×2560  RWKV/RWKV7-Goose-World3-2.9B-HF (and rwkv7-g1 2.9B)
    /// 0.4B is the one that departs from the formula below (gate 128, the formula gives 160).
    public static let official: [Int: RWKV7Ranks] = [
        768: RWKV7Ranks(decay: 64, iclr: 64, valueResidual: 32, gate: 128),
        1024: RWKV7Ranks(decay: 64, iclr: 64, valueResidual: 32, gate: 128),
        2048: RWKV7Ranks(decay: 96, iclr: 96, valueResidual: 64, gate: 256),
        2560: RWKV7Ranks(decay: 96, iclr: 96, valueResidual: 64, gate: 320),
    ]

    /// The "suggestion" formulas of the current RWKV-LM RWKV-7 trainer (RWKV-v7/train_temp/src/model.py
    /// at commit 524481d, the one scripts/train follows): max(32, round(f/32)·32) with
    /// f = 2.5·√C (decay, iclr), 1.7·√C (value residual), 5·√C (gate). A width without a published
    /// model gets these, since the file is loaded into that trainer: at C = 128 and 192 they give
    /// 32/32/32/64. (The paper-era trainer, commit f8214aa, used 1.8/1.8/1.3·√C and 0.6·C^0.8,
    /// which reproduce the released 0.1B, 1.5B and 2.9B ranks; those widths take `official`.)
    public static func trainerFormula(embeddingSize c: Int) -> RWKV7Ranks {
        // Python's round() rounds halves to even.
        func suggestion(_ f: Double) -> Int { max(32, Int((f / 32).rounded(.toNearestOrEven)) * 32) }
        let root = Double(c).squareRoot()
        return RWKV7Ranks(decay: suggestion(2.5 * root), iclr: suggestion(2.5 * root),
                          valueResidual: suggestion(1.7 * root), gate: suggestion(5 * root))
    }

    /// The official ranks for this width, else the trainer's formula.
    public static func defaults(embeddingSize c: Int) -> RWKV7Ranks {
        official[c] ?? trainerFormula(embeddingSize: c)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
