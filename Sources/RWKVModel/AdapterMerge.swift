import COpenBLAS
import RWKVFormats

/// A fine-tune adapter from RWKV-PEFT (JL-er/RWKV-PEFT `merge/merge.py`, `merge_pissa.py`): a
/// torch `.pth` holding, for a linear `P.weight` (out, in), `P.lora_A` (r, in) and `P.lora_B`
/// (out, r); any other tensor replaces the base tensor of that name (trained norms, embeddings).
public struct Adapter {
    public enum Kind {
        /// W + B·A·(alpha / r); RWKV-PEFT's default alpha is 16.
        case lora(alpha: Float)
        /// W − B0·A0 + B·A, with B0/A0 the initial adapter (`P.init_lora_A/B`), no scale.
        case pissa(initial: TensorSource)
    }

    public let source: TensorSource
    public let kind: Kind

    public init(source: TensorSource, kind: Kind) {
        self.source = source
        self.kind = kind
    }

    /// RWKV-PEFT's default `--lora_alpha`.
    public static let defaultAlpha: Float = 16
}

/// A checkpoint with adapters merged into it, in order, before anything else reads it: every
/// program sees the merged model through the same `TensorSource`. Everything that can be
/// checked without reading data is checked at init (names, shapes, ranks, pairs), so a misfit
/// adapter is refused before any output exists. A changed tensor is computed in f32 when read
/// (RWKV-PEFT's script rounds to bf16 along the way; f32 keeps what was trained) and listed as f32.
public final class MergedSource: TensorSource {
    public let path: String
    public let formatName: String
    public let tensors: [TensorInfo]
    public let base: TensorSource
    public let adapters: [Adapter]
    private let changes: [String: [Change]]

    private enum Change {
        /// adapter index, A and B names, scale; with PiSSA, the initial A0 and B0 names.
        case product(adapter: Int, a: String, b: String, scale: Float, initial: (a: String, b: String)?)
        case replace(adapter: Int, name: String)
    }

    public init(base: TensorSource, adapters: [Adapter]) throws {
        self.base = base
        self.adapters = adapters
        path = base.path
        formatName = base.formatName + " + \(adapters.count) adapter\(adapters.count == 1 ? "" : "s")"
        let baseInfo = Dictionary(base.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var changes: [String: [Change]] = [:]
        for (index, adapter) in adapters.enumerated() {
            let file = adapter.source.path
            let infos = Dictionary(adapter.source.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            guard !infos.isEmpty else { throw RWKVError(file, "adapter holds no tensors") }
            for t in adapter.source.tensors {
                guard t.dtype.isFloatingPoint, !t.dtype.isQuantized else {
                    throw RWKVError(file, "adapter tensor \(t.name) is \(t.dtype.rawValue); expected floating point")
                }
                if t.name.hasSuffix(".lora_B") {
                    guard infos[String(t.name.dropLast(7)) + ".lora_A"] != nil else {
                        throw RWKVError(file, "adapter tensor \(t.name) has no matching lora_A")
                    }
                    continue
                }
                if t.name.hasSuffix(".lora_A") {
                    let prefix = String(t.name.dropLast(7))
                    let target = prefix + ".weight"
                    guard let b = infos[prefix + ".lora_B"] else { throw RWKVError(file, "adapter tensor \(t.name) has no matching lora_B") }
                    guard let w = baseInfo[target], w.shape.count == 2 else {
                        throw RWKVError(file, "adapter tensor \(t.name): the base has no matrix \(target) to merge it into")
                    }
                    let (out, inputs) = (w.shape[0], w.shape[1])
                    guard t.shape.count == 2, b.shape.count == 2, t.shape[1] == inputs, b.shape[0] == out,
                          t.shape[0] == b.shape[1], t.shape[0] >= 1, t.shape[0] <= min(out, inputs) else {
                        throw RWKVError(file, "adapter \(prefix): lora_A \(t.shape) and lora_B \(b.shape) do not fit \(target) \(w.shape) "
                                              + "(expected (r, \(inputs)) and (\(out), r) with 1 <= r <= \(min(out, inputs)))")
                    }
                    let rank = t.shape[0]
                    switch adapter.kind {
                    case .lora(let alpha):
                        changes[target, default: []].append(.product(adapter: index, a: t.name, b: b.name, scale: alpha / Float(rank), initial: nil))
                    case .pissa(let initial):
                        let a0 = prefix + ".init_lora_A", b0 = prefix + ".init_lora_B"
                        guard initial.info(a0)?.shape == t.shape, initial.info(b0)?.shape == b.shape else {
                            throw RWKVError(initial.path, "initial PiSSA adapter has no \(a0) \(t.shape) and \(b0) \(b.shape) for \(target)")
                        }
                        changes[target, default: []].append(.product(adapter: index, a: t.name, b: b.name, scale: 1, initial: (a0, b0)))
                    }
                    continue
                }
                guard !t.name.contains("lora") else { throw RWKVError(file, "adapter tensor \(t.name) is neither lora_A nor lora_B") }
                guard let w = baseInfo[t.name] else { throw RWKVError(file, "adapter tensor \(t.name) replaces nothing: the base has no tensor of that name") }
                guard w.shape == t.shape else {
                    throw RWKVError(file, "adapter tensor \(t.name) has shape \(t.shape); the base's is \(w.shape)")
                }
                changes[t.name, default: []].append(.replace(adapter: index, name: t.name))
            }
        }
        self.changes = changes
        tensors = base.tensors.map { changes[$0.name] == nil ? $0 : TensorInfo(name: $0.name, dtype: .f32, shape: $0.shape) }
    }

    /// Each adapter as "file (lora alpha A)" or "file (pissa)", for provenance.
    public var adapterDescriptions: [String] {
        adapters.map { a in
            let file = a.source.path.split(separator: "/").last.map(String.init) ?? a.source.path
            switch a.kind {
            case .lora(let alpha): return "\(file) (lora alpha \(alpha))"
            case .pissa: return "\(file) (pissa)"
            }
        }
    }

    /// Names of the base tensors the adapters change.
    public var changedTensors: [String] { tensors.map(\.name).filter { changes[$0] != nil } }

    public func data(_ name: String) throws -> [UInt8] {
        guard let steps = changes[name] else { return try base.data(name) }
        var w = try merged(name, steps)
        return w.withUnsafeMutableBytes { Array($0) }
    }

    public func read(_ name: String, inPiecesOf pieceBytes: Int, using buffer: ReusableBuffer,
                     _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard changes[name] != nil else { return try base.read(name, inPiecesOf: pieceBytes, using: buffer, body) }
        try forEachPiece(of: try data(name), pieceBytes: pieceBytes, body)
    }

    private func merged(_ name: String, _ steps: [Change]) throws -> [Float] {
        guard let info = base.info(name) else { throw RWKVError(path, "no tensor named \(name)") }
        var w = try base.floats(name)
        for step in steps {
            switch step {
            case .replace(let i, let n):
                w = try adapters[i].source.floats(n)
            case .product(let i, let a, let b, let scale, let initial):
                let (out, inputs) = (info.shape[0], info.shape[1])
                if let initial, case .pissa(let source) = adapters[i].kind {
                    try addProduct(&w, out: out, inputs: inputs, b: try source.floats(initial.b), a: try source.floats(initial.a), scale: -1)
                }
                try addProduct(&w, out: out, inputs: inputs, b: try adapters[i].source.floats(b), a: try adapters[i].source.floats(a), scale: scale)
            }
        }
        return w
    }

    /// w (out × inputs) += scale · b (out × r) · a (r × inputs).
    private func addProduct(_ w: inout [Float], out: Int, inputs: Int, b: [Float], a: [Float], scale: Float) throws {
        let rank = a.count / max(inputs, 1)
        guard w.count == out * inputs, b.count == out * rank, a.count == rank * inputs, max(out, inputs, rank) < Int(Int32.max) else {
            throw RWKVError(path, "adapter product does not fit its matrix (\(out) x \(inputs), rank \(rank))")
        }
        w.withUnsafeMutableBufferPointer { w in
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(out), Int32(inputs), Int32(rank),
                        scale, b, Int32(rank), a, Int32(inputs), 1, w.baseAddress, Int32(inputs))
        }
    }
}

/// The adapters a command line names (`--merge-lora`, `--lora-alpha`, `--pissa-init`), in order.
public struct AdapterList: Codable, Sendable, Equatable {
    public var paths: [String] = []
    /// One value for all LoRA adapters or one per adapter (none: RWKV-PEFT's 16).
    public var alphas: [Float] = []
    /// Each adapter's initial PiSSA adapter; when given, every adapter is a PiSSA merge.
    public var pissaInitials: [String] = []

    public init(paths: [String] = [], alphas: [Float] = [], pissaInitials: [String] = []) {
        self.paths = paths
        self.alphas = alphas
        self.pissaInitials = pissaInitials
    }

    public var isEmpty: Bool { paths.isEmpty }

    public func open() throws -> [Adapter] {
        guard alphas.count <= 1 || alphas.count == paths.count else {
            throw RWKVError(nil, "--lora-alpha is given \(alphas.count) times for \(paths.count) adapters: give it once, or once per adapter")
        }
        guard pissaInitials.isEmpty || pissaInitials.count == paths.count else {
            throw RWKVError(nil, "--pissa-init is given \(pissaInitials.count) times for \(paths.count) adapters: give it once per adapter")
        }
        if !pissaInitials.isEmpty, !alphas.isEmpty { throw RWKVError(nil, "--lora-alpha does not apply to PiSSA adapters (they merge unscaled)") }
        if let bad = alphas.first(where: { !$0.isFinite }) { throw RWKVError(nil, "--lora-alpha \(bad) is not a finite number") }
        return try paths.enumerated().map { i, path in
            let source = try ModelFile.open(path)
            if !pissaInitials.isEmpty { return Adapter(source: source, kind: .pissa(initial: try ModelFile.open(pissaInitials[i]))) }
            return Adapter(source: source, kind: .lora(alpha: alphas.isEmpty ? Adapter.defaultAlpha : alphas[alphas.count == 1 ? 0 : i]))
        }
    }

    /// `base` with these adapters merged in (itself when there are none).
    public func merged(into base: TensorSource) throws -> TensorSource {
        isEmpty ? base : try MergedSource(base: base, adapters: try open())
    }
}
