import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

/// Float storage at a fixed address, so the kernels and OpenBLAS can address it directly without
/// going through `withUnsafe...` closures. Used for weights (written once at load) and for the
/// forward pass's scratch buffers (reused from token to token).
final class FloatBuffer: @unchecked Sendable {
    let count: Int
    let base: UnsafeMutablePointer<Float>

    init(count: Int) {
        self.count = count
        base = .allocate(capacity: max(count, 1))
        base.initialize(repeating: 0, count: max(count, 1))
    }

    init(_ values: [Float]) {
        count = values.count
        base = .allocate(capacity: max(count, 1))
        if count == 0 { base.initialize(to: 0) }
        values.withUnsafeBufferPointer { if let src = $0.baseAddress { base.initialize(from: src, count: count) } }
    }

    deinit { base.deallocate() }

    var array: [Float] { Array(UnsafeBufferPointer(start: base, count: count)) }
}

/// A weight matrix used as a linear map on row vectors, `y = x · M`, through OpenBLAS: GEMV for
/// one row (RNN mode), GEMM for a block of rows (sequence mode).
struct Linear: @unchecked Sendable {
    /// How the checkpoint stores the matrix.
    enum Layout {
        /// (outputs, inputs): torch `nn.Linear.weight` (receptance, key, value, output, ffn, head).
        case outputsByInputs
        /// (inputs, outputs): the LoRA factors w1/w2, a1/a2, ..., time_maa_w1, time_decay_w1/w2.
        case inputsByOutputs
    }

    let inputs: Int
    let outputs: Int
    let layout: Layout
    let weights: FloatBuffer
    /// Element offset of this matrix inside `weights` (time_maa_w2 holds five matrices).
    let offset: Int

    init(inputs: Int, outputs: Int, layout: Layout, weights: FloatBuffer, offset: Int = 0) {
        self.inputs = inputs
        self.outputs = outputs
        self.layout = layout
        self.weights = weights
        self.offset = offset
    }

    /// `y[r] = x[r] · M` (or `y[r] += x[r] · M` when `accumulate`) for `rows` rows. Row r of x
    /// starts at `x + r * xStride`, of y at `y + r * yStride`.
    func apply(_ x: UnsafePointer<Float>, rows: Int, xStride: Int? = nil,
               to y: UnsafeMutablePointer<Float>, yStride: Int? = nil, accumulate: Bool = false) {
        guard rows > 0 else { return }
        let lda = Int32(xStride ?? inputs), ldc = Int32(yStride ?? outputs)
        let m = Int32(rows), n = Int32(outputs), k = Int32(inputs)
        let w = UnsafePointer(weights.base + offset)
        let beta: Float = accumulate ? 1 : 0
        switch (layout, rows) {
        case (.outputsByInputs, 1):
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1, w, k, x, 1, beta, y, 1)
        case (.inputsByOutputs, 1):
            cblas_sgemv(CblasRowMajor, CblasTrans, k, n, 1, w, n, x, 1, beta, y, 1)
        case (.outputsByInputs, _):
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, x, lda, w, k, beta, y, ldc)
        case (.inputsByOutputs, _):
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, x, lda, w, n, beta, y, ldc)
        }
    }
}

/// OpenBLAS itself: the pthreads build starts its worker threads when the library is loaded, and
/// each spins (sched_yield) for about 0.1 s before going to sleep. A program that links it but
/// does no matrix work (rwkv-convert) would lose a core to that spin at start.
public enum OpenBLAS {
    /// The threads OpenBLAS's matrix products use from now on (`--threads`).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    /// Ends OpenBLAS's worker threads now; it starts them again on its next threaded call. Looked
    /// up by name because only the pthreads build of the library has the function.
    public static func stopIdleThreads() {
        guard let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "blas_thread_shutdown_") else { return }
        typealias Shutdown = @convention(c) () -> Int32
        _ = unsafeBitCast(symbol, to: Shutdown.self)()
    }
}
