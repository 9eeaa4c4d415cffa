/// ggml block quantization (q8_0, q4_0, q4_1, q5_0, q5_1), byte-identical to ggml's `*_ref`.
/// Placeholder signatures: the implementation lands with the quantization work.
public enum Quantizer {
    public static func quantize(_ src: UnsafeBufferPointer<Float>, type: DType, into dst: UnsafeMutableRawBufferPointer) {
        fatalError("Quantizer.quantize(\(type)) is not implemented yet")
    }

    public static func dequantize(_ src: UnsafeRawBufferPointer, type: DType, into dst: UnsafeMutableBufferPointer<Float>) {
        fatalError("Quantizer.dequantize(\(type)) is not implemented yet")
    }
}
