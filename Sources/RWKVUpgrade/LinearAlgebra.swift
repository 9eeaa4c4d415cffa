import COpenBLAS
import RWKVFormats

/// A dense row-major matrix of Float, the form every weight takes inside the upgrade.
/// A 1-D tensor is a 1×n matrix; a (1,1,C) lerp vector is 1×C.
public struct Matrix: Equatable, Sendable {
    public let rows: Int
    public let cols: Int
    public var values: [Float]

    public init(rows: Int, cols: Int, values: [Float]) {
        precondition(values.count == rows * cols, "matrix \(rows)x\(cols) given \(values.count) values")
        self.rows = rows
        self.cols = cols
        self.values = values
    }

    public init(zeros rows: Int, _ cols: Int) {
        self.init(rows: rows, cols: cols, values: [Float](repeating: 0, count: rows * cols))
    }

    public init(row: [Float]) {
        self.init(rows: 1, cols: row.count, values: row)
    }

    public subscript(r: Int, c: Int) -> Float {
        get { values[r * cols + c] }
        set { values[r * cols + c] = newValue }
    }

    public func row(_ r: Int) -> ArraySlice<Float> { values[(r * cols)..<((r + 1) * cols)] }

    public func column(_ c: Int) -> [Float] { (0..<rows).map { self[$0, c] } }

    public func transposed() -> Matrix {
        var out = Matrix(zeros: cols, rows)
        for r in 0..<rows { for c in 0..<cols { out.values[c * rows + r] = values[r * cols + c] } }
        return out
    }

    /// Every element multiplied by `factor`.
    public func scaled(_ factor: Float) -> Matrix {
        Matrix(rows: rows, cols: cols, values: values.map { $0 * factor })
    }

    /// Row r multiplied by factors[r].
    public func scalingRows(_ factors: [Float]) -> Matrix {
        precondition(factors.count == rows)
        var out = self
        for r in 0..<rows { for c in 0..<cols { out.values[r * cols + c] *= factors[r] } }
        return out
    }

    /// Column c multiplied by factors[c].
    public func scalingColumns(_ factors: [Float]) -> Matrix {
        precondition(factors.count == cols)
        var out = self
        for r in 0..<rows { for c in 0..<cols { out.values[r * cols + c] *= factors[c] } }
        return out
    }

    /// The matrix product self · other (OpenBLAS sgemm).
    public func multiplied(by other: Matrix) -> Matrix {
        precondition(cols == other.rows, "cannot multiply \(rows)x\(cols) by \(other.rows)x\(other.cols)")
        return product(other, transposingSelf: false)
    }

    /// selfᵀ · other without forming the transpose.
    public func transposedTimes(_ other: Matrix) -> Matrix {
        precondition(rows == other.rows, "cannot multiply the transpose of \(rows)x\(cols) by \(other.rows)x\(other.cols)")
        return product(other, transposingSelf: true)
    }

    private func product(_ other: Matrix, transposingSelf: Bool) -> Matrix {
        let m = transposingSelf ? cols : rows, k = transposingSelf ? rows : cols
        var out = Matrix(zeros: m, other.cols)
        guard m > 0, other.cols > 0, k > 0 else { return out }
        values.withUnsafeBufferPointer { a in
            other.values.withUnsafeBufferPointer { b in
                out.values.withUnsafeMutableBufferPointer { c in
                    cblas_sgemm(CblasRowMajor, transposingSelf ? CblasTrans : CblasNoTrans, CblasNoTrans, Int32(m), Int32(other.cols),
                                Int32(k), 1, a.baseAddress, Int32(cols), b.baseAddress, Int32(other.cols), 0, c.baseAddress, Int32(other.cols))
                }
            }
        }
        return out
    }

    /// Frobenius norm, accumulated in Double.
    public var frobeniusNorm: Double {
        values.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
    }
}

/// The leading singular triplets of a matrix: A ≈ U · diag(S) · Vᵀ.
public struct TruncatedSVD: Sendable {
    /// rows(A) × k, orthonormal columns.
    public let u: Matrix
    /// k values, descending, non-negative.
    public let s: [Float]
    /// cols(A) × k, orthonormal columns.
    public let v: Matrix

    /// Computes the `rank` leading singular triplets of `a`.
    ///
    /// Method: the eigen-decomposition of the Gram matrix AᵀA (or AAᵀ for wide matrices), built in
    /// Double with dsyrk and solved for its top eigenpairs only by LAPACK dsyevr (MRRR), then
    /// U = A·V/σ. Squaring costs precision only for singular values far below the largest
    /// (relative error about 1e-16·(σ₁/σᵢ)² in Double), which is irrelevant for a truncation that
    /// keeps the leading ones; the tests compare against exact factorisations to 1e-5. Cost for
    /// C×C: one C³ rank-k update plus the tridiagonal reduction, a few seconds at C = 4096.
    /// Each singular vector's sign is fixed (largest component of v positive), so results are
    /// reproducible and comparable across runs.
    public init(_ a: Matrix, rank: Int) throws {
        if a.cols > a.rows {
            let t = try TruncatedSVD(a.transposed(), rank: rank)
            // A = (Aᵀ)ᵀ = V S Uᵀ; keep the sign rule on v (largest component positive).
            let (u, v) = Self.fixSigns(u: t.v, v: t.u)
            self.u = u; self.s = t.s; self.v = v
            return
        }
        let m = a.rows, n = a.cols
        let k = min(rank, n)
        guard k > 0 else {
            u = Matrix(zeros: m, 0); s = []; v = Matrix(zeros: n, 0)
            return
        }
        // Gram matrix G = AᵀA (n×n), upper triangle in row-major order, which LAPACK's
        // column-major view sees as the lower triangle.
        let ad = a.values.map(Double.init)
        var gram = [Double](repeating: 0, count: n * n)
        ad.withUnsafeBufferPointer { ap in
            gram.withUnsafeMutableBufferPointer { gp in
                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(n), Int32(m), 1, ap.baseAddress, Int32(n), 0,
                            gp.baseAddress, Int32(n))
            }
        }
        let (eigenvalues, eigenvectors) = try Self.topEigenpairs(symmetricLower: &gram, n: n, count: k)
        // eigenvalues ascending; reorder descending.
        var sv = [Float](repeating: 0, count: k)
        var vm = Matrix(zeros: n, k)
        for j in 0..<k {
            let src = k - 1 - j
            sv[j] = Float(max(eigenvalues[src], 0).squareRoot())
            for i in 0..<n { vm[i, j] = Float(eigenvectors[src * n + i]) }
        }
        // U = A V / σ (dgemm in Double).
        let vd = vm.values.map(Double.init)
        var av = [Double](repeating: 0, count: m * k)
        ad.withUnsafeBufferPointer { ap in
            vd.withUnsafeBufferPointer { vp in
                av.withUnsafeMutableBufferPointer { cp in
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(k), Int32(n), 1,
                                ap.baseAddress, Int32(n), vp.baseAddress, Int32(k), 0, cp.baseAddress, Int32(k))
                }
            }
        }
        var um = Matrix(zeros: m, k)
        for j in 0..<k where sv[j] > 0 {
            let inv = 1 / Double(sv[j])
            for r in 0..<m { um[r, j] = Float(av[r * k + j] * inv) }
        }
        let (u, v) = Self.fixSigns(u: um, v: vm)
        self.u = u; self.s = sv; self.v = v
    }

    /// Flips each (u_j, v_j) pair so that v_j's component of largest magnitude is positive.
    static func fixSigns(u: Matrix, v: Matrix) -> (Matrix, Matrix) {
        var u = u, v = v
        for j in 0..<v.cols {
            var best: Float = 0
            for i in 0..<v.rows where abs(v[i, j]) > abs(best) { best = v[i, j] }
            if best < 0 {
                for i in 0..<v.rows { v[i, j] = -v[i, j] }
                for i in 0..<u.rows { u[i, j] = -u[i, j] }
            }
        }
        return (u, v)
    }

    /// The `count` largest eigenpairs of a symmetric n×n matrix (lower triangle, column-major),
    /// eigenvalues ascending, eigenvectors as consecutive columns of length n.
    static func topEigenpairs(symmetricLower a: inout [Double], n: Int, count: Int) throws -> ([Double], [Double]) {
        var jobz = Int8(UInt8(ascii: "V")), range = Int8(UInt8(ascii: "I")), uplo = Int8(UInt8(ascii: "L"))
        var nn = Int32(n), lda = Int32(n), il = Int32(n - count + 1), iu = Int32(n), ldz = Int32(n)
        var vl = 0.0, vu = 0.0, abstol = 0.0
        var found: Int32 = 0, info: Int32 = 0
        var w = [Double](repeating: 0, count: n)
        var z = [Double](repeating: 0, count: n * count)
        var isuppz = [Int32](repeating: 0, count: 2 * count)
        // Workspace query, then the real call.
        var workSize = 0.0
        var iworkSize: Int32 = 0
        var query: Int32 = -1
        dsyevr_(&jobz, &range, &uplo, &nn, &a, &lda, &vl, &vu, &il, &iu, &abstol, &found, &w, &z, &ldz, &isuppz,
                &workSize, &query, &iworkSize, &query, &info, 1, 1, 1)
        guard info == 0 else { throw RWKVError(nil, "eigen-decomposition workspace query failed (LAPACK dsyevr info \(info))") }
        var lwork = Int32(workSize.rounded(.up)), liwork = iworkSize
        var work = [Double](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        dsyevr_(&jobz, &range, &uplo, &nn, &a, &lda, &vl, &vu, &il, &iu, &abstol, &found, &w, &z, &ldz, &isuppz,
                &work, &lwork, &iwork, &liwork, &info, 1, 1, 1)
        guard info == 0, Int(found) == count else {
            throw RWKVError(nil, "eigen-decomposition did not converge (LAPACK dsyevr info \(info), \(found) of \(count) eigenpairs)")
        }
        return (Array(w.prefix(count)), z)
    }
}

extension Matrix {
    /// A random matrix with orthonormal rows (rows ≤ cols) or columns (rows > cols), times
    /// `gain`: the distribution torch.nn.init.orthogonal_ draws from (QR of a Gaussian matrix with
    /// the signs of R's diagonal made positive), built here by modified Gram-Schmidt in Double on
    /// a seeded Gaussian matrix.
    public static func orthogonal(rows: Int, cols: Int, gain: Float, random: inout SeededRandom) -> Matrix {
        let long = max(rows, cols), short = min(rows, cols)
        // `short` Gaussian vectors of length `long`, orthonormalised in order.
        var basis = [[Double]](repeating: [], count: short)
        for j in 0..<short {
            var v = (0..<long).map { _ in random.gaussian() }
            for _ in 0..<2 {   // a second pass keeps orthogonality at rounding level
                for p in 0..<j {
                    var dot = 0.0
                    for i in 0..<long { dot += basis[p][i] * v[i] }
                    for i in 0..<long { v[i] -= dot * basis[p][i] }
                }
            }
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            basis[j] = v.map { $0 / norm }
        }
        var out = Matrix(zeros: rows, cols)
        for j in 0..<short {
            for i in 0..<long {
                let value = Float(basis[j][i]) * gain
                if rows <= cols { out[j, i] = value } else { out[i, j] = value }
            }
        }
        return out
    }
}
