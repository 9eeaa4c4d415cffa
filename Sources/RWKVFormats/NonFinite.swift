import CKernels

/// NaN and infinite weights (a diverged or damaged checkpoint), counted so that no program passes
/// them on silently: rwkv-convert refuses them (unless `--allow-non-finite`), rwkv-verify and
/// rwkv-upgrade refuse them. One count, one message, for all three.
public struct NonFiniteCount: Sendable, Equatable {
    /// Values that are NaN, infinite, or (f64) beyond f32's range, so infinite once read.
    public var count = 0
    /// Element index (row-major) of the first one.
    public var first: Int?

    public init(count: Int = 0, first: Int? = nil) {
        self.count = count
        self.first = first
    }

    /// Adds the count of a later part of the same tensor that starts at element `offset`.
    public mutating func add(_ part: NonFiniteCount, at offset: Int) {
        guard part.count > 0 else { return }
        if first == nil { first = part.first.map { $0 + offset } }
        count += part.count
    }

    /// Counts in raw bytes of a float type (other types hold no non-finite values).
    public static func scan(_ raw: UnsafeRawBufferPointer, as dtype: DType) -> NonFiniteCount {
        guard let base = raw.baseAddress else { return NonFiniteCount() }
        var first = 0
        let n: Int
        switch dtype {
        case .f32: n = cnonfinite_f32(base.assumingMemoryBound(to: UInt32.self), raw.count / 4, &first)
        case .f16: n = cnonfinite_16(base.assumingMemoryBound(to: UInt16.self), raw.count / 2, 0x7c00, &first)
        case .bf16: n = cnonfinite_16(base.assumingMemoryBound(to: UInt16.self), raw.count / 2, 0x7f80, &first)
        case .f64: n = cnonfinite_f64(base.assumingMemoryBound(to: Double.self), raw.count / 8, &first)
        default: return NonFiniteCount()
        }
        return n == 0 ? NonFiniteCount() : NonFiniteCount(count: n, first: first)
    }

    /// Counts in values already widened to Float.
    public static func scan(_ values: UnsafeBufferPointer<Float>) -> NonFiniteCount {
        UnsafeRawBufferPointer(values).withMemoryRebound(to: UInt8.self) { scan(UnsafeRawBufferPointer($0), as: .f32) }
    }

    public static func scan(_ values: [Float]) -> NonFiniteCount {
        values.withUnsafeBufferPointer { scan($0) }
    }

    /// "holds 3 NaN or infinite values (first at element 17)": what every program says.
    public var description: String {
        "holds \(count) NaN or infinite value\(count == 1 ? "" : "s") (first at element \(first ?? 0))"
    }

    /// The error for a tensor of `path` with these values; `advice` says what the program offers.
    public func error(path: String, tensor: String, advice: String) -> RWKVError {
        RWKVError(path, "tensor \(tensor) \(ErrorMessage(description)): a diverged or damaged checkpoint; \(ErrorMessage(advice))")
    }

    /// The values when all are finite; otherwise the error (`advice` as above).
    public static func checked(_ values: [Float], path: String, tensor: String, advice: String) throws -> [Float] {
        let found = scan(values)
        if found.count > 0 { throw found.error(path: path, tensor: tensor, advice: advice) }
        return values
    }
}
