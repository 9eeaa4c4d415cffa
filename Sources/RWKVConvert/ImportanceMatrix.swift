import Foundation
import RWKVFormats
import RWKVText
import RWKVModel

/// llama.cpp's importance matrix (tools/imatrix/imatrix.cpp): for every weight matrix the
/// forward pass multiplies by (`ggml_mul_mat` with a `blk.*` weight; `output.weight` only with
/// --process-output), per input column, the sum of the squared activations entering the product
/// (`in_sum2`), and how many rows (tokens) were summed (`counts`). The quantizers weigh each
/// column's rounding error by in_sum2/count, as llama-quantize does.
///
/// Files: the GGUF format llama-imatrix writes now (`general.type = imatrix`, `imatrix.datasets`,
/// `imatrix.chunk_count`, `imatrix.chunk_size`, tensors `<name>.in_sum2` F32 [matrices, width]
/// and `<name>.counts` F32 [matrices, 1], names sorted) is read and written; the legacy `.dat`
/// format (save_imatrix_legacy) is read. Dense RWKV weights are one matrix each (matrices = 1);
/// the reader accepts more, as llama.cpp's (merged-expert 3-D weights).
public struct ImportanceMatrix: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// Values per matrix (the weight's input width).
        public let width: Int
        /// Σx² per input column, `counts.count` rows of `width` (legacy files: the stored
        /// mean × ncall, whose count is ncall, so that sums / count is the mean either way).
        public let sums: [Float]
        public let counts: [Float]

        public init(width: Int, sums: [Float], counts: [Float]) {
            self.width = width
            self.sums = sums
            self.counts = counts
        }

        /// Per column, the mean squared activation: what llama-quantize hands the quantizers
        /// (in_sum2 / count per matrix; 1 for a matrix that saw no data, as llama-quantize fills it).
        public var importance: [Float] {
            var out = [Float](repeating: 1, count: sums.count)
            for m in counts.indices where counts[m] > 0 {
                for j in 0..<width { out[m * width + j] = sums[m * width + j] / counts[m] }
            }
            return out
        }
    }

    /// Keyed by the weight's GGUF name (`blk.0.time_mix_key.weight`).
    public var entries: [String: Entry]
    public var datasets: [String]
    public var chunkCount: Int
    /// Tokens per chunk; nil for a legacy file (which does not record it).
    public var chunkSize: Int?

    public init(entries: [String: Entry], datasets: [String], chunkCount: Int, chunkSize: Int?) {
        self.entries = entries
        self.datasets = datasets
        self.chunkCount = chunkCount
        self.chunkSize = chunkSize
    }

    /// The importance row(s) of a weight, or nil when the file has none for it.
    public func importance(_ tensor: String) -> [Float]? { entries[tensor]?.importance }

    static let typeKey = "general.type", datasetsKey = "imatrix.datasets"
    static let chunkCountKey = "imatrix.chunk_count", chunkSizeKey = "imatrix.chunk_size"
    static let sumsSuffix = ".in_sum2", countsSuffix = ".counts"

    // MARK: Writing

    /// Writes the GGUF form, atomically (nothing under `path` unless complete).
    public func write(to path: String, refusingToOverwrite inputs: [String] = [], durable: Bool = false) throws {
        var tensors: [TensorInfo] = []
        var data: [[Float]] = []
        for name in entries.keys.sorted() {
            let e = entries[name]!
            tensors.append(TensorInfo(name: name + Self.sumsSuffix, dtype: .f32, shape: [e.counts.count, e.width]))
            tensors.append(TensorInfo(name: name + Self.countsSuffix, dtype: .f32, shape: [e.counts.count, 1]))
            data += [e.sums, e.counts]
        }
        let metadata = [
            GGUFKeyValue(Self.typeKey, .string("imatrix")),
            GGUFKeyValue(Self.datasetsKey, .array(.string, datasets.map { .string($0) })),
            GGUFKeyValue(Self.chunkCountKey, .uint32(UInt32(clamping: chunkCount))),
            GGUFKeyValue(Self.chunkSizeKey, .uint32(UInt32(clamping: chunkSize ?? 0))),
        ]
        let writer = try GGUFWriter(path: path, metadata: metadata, tensors: tensors, refusingToOverwrite: inputs, durable: durable)
        for values in data {
            var overflow = 0
            try writer.writeTensor(try ElementCodec.encode(values, as: .f32, overflowCount: &overflow))
        }
        try writer.finish()
    }

    // MARK: Reading

    /// Reads either format (GGUF by its magic, the legacy layout otherwise).
    public static func read(_ path: String) throws -> ImportanceMatrix {
        let file = try InputFile(path)
        if file.size >= 4, try file.prefix(4) == GGUF.magic { return try readGGUF(path) }
        return try readLegacy(file)
    }

    static func readGGUF(_ path: String) throws -> ImportanceMatrix {
        let gguf = try GGUFReader(path: path)
        var sums: [String: GGUFTensorInfo] = [:], counts: [String: GGUFTensorInfo] = [:]
        for t in gguf.tensorInfos {
            if t.name.hasSuffix(sumsSuffix) { sums[String(t.name.dropLast(sumsSuffix.count))] = t }
            else if t.name.hasSuffix(countsSuffix) { counts[String(t.name.dropLast(countsSuffix.count))] = t }
            // other tensors (llama-imatrix's optional `.in_sum`) are not needed for quantizing
        }
        guard !sums.isEmpty else { throw RWKVError(path, "no <tensor>.in_sum2 tensors: not an importance matrix") }
        var entries: [String: Entry] = [:]
        for name in Set(sums.keys).union(counts.keys).sorted() {
            guard let s = sums[name], let c = counts[name] else {
                throw RWKVError(path, "mismatched sums and counts for \(escapedName(name))")
            }
            guard s.dtype == .f32, c.dtype == .f32 else { throw RWKVError(path, "\(escapedName(name)): sums and counts must be F32") }
            let shape = s.shape, matrices = c.elementCount
            guard shape.count == 2, shape[0] == matrices, shape[1] > 0, c.shape.last == 1 else {
                throw RWKVError(path, "\(escapedName(name)): in_sum2 shape \(shape) does not match counts shape \(c.shape)")
            }
            let sumValues = try floats(gguf, s, path: path), countValues = try floats(gguf, c, path: path)
            guard countValues.allSatisfy({ $0.isFinite && $0 >= 0 }) else { throw RWKVError(path, "\(escapedName(name)): counts must be finite and non-negative") }
            guard sumValues.allSatisfy({ $0.isFinite && $0 >= 0 }) else { throw RWKVError(path, "\(escapedName(name)): non-finite or negative sums of squares") }
            entries[name] = Entry(width: shape[1], sums: sumValues, counts: countValues)
        }
        var datasets: [String] = []
        if let items = gguf.value(datasetsKey)?.items { datasets = items.compactMap(\.string) }
        return ImportanceMatrix(entries: entries, datasets: datasets,
                                chunkCount: gguf.value(chunkCountKey)?.integer ?? 0,
                                chunkSize: gguf.value(chunkSizeKey)?.integer)
    }

    private static func floats(_ gguf: GGUFReader, _ t: GGUFTensorInfo, path: String) throws -> [Float] {
        try ElementCodec.decode(try gguf.data(t.name), as: .f32, count: t.elementCount, context: path)
    }

    /// save_imatrix_legacy's layout, little-endian: i32 entry count; per entry i32 name length,
    /// the name, i32 ncall, i32 value count, that many f32 (mean of squares × ncall); then i32
    /// chunk count and, optionally, i32 length + the dataset's name.
    static func readLegacy(_ file: InputFile) throws -> ImportanceMatrix {
        let path = file.path
        guard file.size <= 1 << 31 else { throw RWKVError(path, "legacy importance matrix larger than 2 GiB") }
        let bytes = try file.read(at: 0, count: file.size, what: "importance matrix")
        var at = 0
        func int32(_ what: String) throws -> Int {
            guard at + 4 <= bytes.count else { throw RWKVError(path, "truncated legacy importance matrix (\(what) at byte \(at))") }
            defer { at += 4 }
            return Int(Int32(bitPattern: UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24))
        }
        let n = try int32("entry count")
        // Each entry takes at least 16 bytes: a count beyond that is not this format.
        guard n >= 1, n <= bytes.count / 16 else {
            throw RWKVError(path, "neither GGUF nor a legacy importance matrix (entry count \(n))")
        }
        var entries: [String: Entry] = [:]
        for i in 0..<n {
            let length = try int32("name length")
            guard length > 0, length <= 4096, at + length <= bytes.count else {
                throw RWKVError(path, "legacy importance matrix entry \(i + 1): bad name length \(length)")
            }
            let name = String(decoding: bytes[at..<(at + length)], as: UTF8.self)
            at += length
            let ncall = try int32("ncall"), count = try int32("value count")
            guard count >= 1, at + 4 * count <= bytes.count else {
                throw RWKVError(path, "legacy importance matrix entry \(escapedName(name)): bad value count \(count)")
            }
            guard ncall >= 0 else { throw RWKVError(path, "legacy importance matrix entry \(escapedName(name)): negative ncall \(ncall)") }
            let values = try ElementCodec.decode(Array(bytes[at..<(at + 4 * count)]), as: .f32, count: count, context: path)
            at += 4 * count
            guard values.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                throw RWKVError(path, "legacy importance matrix entry \(escapedName(name)): non-finite or negative values")
            }
            guard entries[name] == nil else { throw RWKVError(path, "legacy importance matrix: duplicate entry \(escapedName(name))") }
            entries[name] = Entry(width: count, sums: values, counts: [Float(ncall)])
        }
        var chunkCount = 0, datasets: [String] = []
        if at + 4 <= bytes.count { chunkCount = try int32("chunk count") }
        if at + 4 <= bytes.count {
            let length = try int32("dataset length")
            if length > 0, at + length <= bytes.count { datasets = [String(decoding: bytes[at..<(at + length)], as: UTF8.self)] }
        }
        return ImportanceMatrix(entries: entries, datasets: datasets, chunkCount: chunkCount, chunkSize: nil)
    }

    /// A tensor name from a file, printable in one line.
    static func escapedName(_ name: String) -> String {
        Vocabulary.escape(Array(name.utf8.prefix(80)))
    }
}

/// Accumulates an importance matrix from a forward pass (a `MatmulObserver`), under llama.cpp's
/// tensor names, the way llama-imatrix does: every row of every observed product, in double
/// (llama.cpp sums in float; double keeps long runs exact to float precision).
public final class ImportanceCollector: MatmulObserver {
    /// Checkpoint name → GGUF name, for every weight llama-imatrix collects.
    private let names: [String: String]
    /// The output matrix's checkpoint name (collected only with --process-output).
    private let head: String
    /// Per GGUF name: Σx² per column (a class, so that adding to it does not copy the array).
    private final class Sums {
        var values: [Double]
        var rows = 0
        init(width: Int) { values = [Double](repeating: 0, count: width) }
    }
    private var sums: [String: Sums] = [:]
    private var unknown: Set<String> = []

    /// - Parameter processOutput: also the head (`output.weight`), as llama-imatrix --process-output.
    public init(config: RWKVConfig, processOutput: Bool = false) {
        var names: [String: String] = [:]
        for t in GGUFLayout.tensors(for: config) where t.canonicalNames.count == 1 && t.name.hasPrefix("blk.") {
            names[t.canonicalNames[0]] = t.name
        }
        let head = config.schema.headName
        if processOutput { names[head] = config.schema.headRow.gguf.name }
        self.head = head
        self.names = names
    }

    public func observe(weight: String, input: UnsafePointer<Float>, rows: Int, width: Int, stride: Int) {
        guard let name = names[weight] else {
            if weight != head { unknown.insert(weight) }
            return
        }
        let acc: Sums
        if let existing = sums[name] { acc = existing } else { acc = Sums(width: width); sums[name] = acc }
        guard acc.values.count == width else { unknown.insert(weight + " (width changed)"); return }
        acc.values.withUnsafeMutableBufferPointer { s in
            for r in 0..<rows {
                let x = input + r * stride
                for j in 0..<width { let v = Double(x[j]); s[j] += v * v }
            }
        }
        acc.rows += rows
    }

    /// The matrix so far. Throws if a product had no GGUF name (a model the table does not
    /// describe) or an activation was not finite (llama-imatrix stops there too).
    public func matrix(datasets: [String], chunkCount: Int, chunkSize: Int) throws -> ImportanceMatrix {
        if let u = unknown.sorted().first { throw RWKVError(nil, "internal error: no GGUF name for the product with \(u)") }
        var entries: [String: ImportanceMatrix.Entry] = [:]
        for (name, s) in sums {
            let values = s.values.map { Float($0) }
            guard values.allSatisfy(\.isFinite) else { throw RWKVError(nil, "non-finite activations entering \(name): the model produces inf/NaN on this text") }
            entries[name] = ImportanceMatrix.Entry(width: values.count, sums: values, counts: [Float(s.rows)])
        }
        return ImportanceMatrix(entries: entries, datasets: datasets, chunkCount: chunkCount, chunkSize: chunkSize)
    }
}

/// `rwkv-convert imatrix`: our forward pass over a text, chunk by chunk, collecting.
public enum ImportanceMatrixRun {
    public struct Report: Codable, Sendable {
        public let model: String
        public let output: String
        public let textFile: String
        public let tokenizer: String
        public let chunkSize: Int
        public let chunks: Int
        public let tokens: Int
        public let tensors: Int
        public let processOutput: Bool
        public let seconds: Double
        public let tokensPerSecond: Double

        public var summary: String {
            "\(output): \(tensors) tensors from \(chunks) chunks of \(chunkSize) tokens of \(textFile) (\(tokenizer)); "
                + String(format: "%.2f s, %.0f tokens/s", seconds, tokensPerSecond)
        }
    }

    /// llama-imatrix ignores products of fewer than 16 rows; a chunk is one product per weight.
    public static let minimumChunk = 16

    /// Runs every chunk of `chunks` through `model` (sequence mode, zero state per chunk, every
    /// token of the chunk, as llama-imatrix) and returns the collected matrix.
    public static func collect(_ model: RWKVLanguageModel, chunks: TextChunks, processOutput: Bool,
                               progress: ((Int, Int, String) -> Void)? = nil) throws -> (ImportanceMatrix, seconds: Double) {
        guard chunks.size >= minimumChunk else {
            throw RWKVError(nil, "--chunk must be at least \(minimumChunk) tokens: llama-imatrix skips smaller batches")
        }
        let collector = ImportanceCollector(config: model.config, processOutput: processOutput)
        let previous = model.matmulObserver
        model.matmulObserver = collector
        defer { model.matmulObserver = previous }
        let clock = Stopwatch()
        // Pieces bound the logits held (positions .all is needed for the head's inputs).
        let piece = 128
        for c in 0..<chunks.count {
            let tokens = Array(chunks.chunk(c))
            var state = model.makeState()
            var start = 0
            while start < tokens.count {
                let end = min(start + piece, tokens.count)
                _ = try model.forward(Array(tokens[start..<end]), state: &state, mode: .sequence, positions: processOutput ? .all : .last)
                start = end
            }
            let done = (c + 1) * chunks.size
            progress?(done, chunks.count * chunks.size,
                      "chunk \(c + 1)/\(chunks.count), " + String(format: "%.0f tok/s", Double(done) / max(clock.seconds, 1e-9)))
        }
        let matrix = try collector.matrix(datasets: [chunks.path], chunkCount: chunks.count, chunkSize: chunks.size)
        return (matrix, clock.seconds)
    }

    /// Loads the model, collects over the text and writes `output`.
    public static func run(model path: String, text: String, output: String, chunkSize: Int, maxChunks: Int?,
                           processOutput: Bool, vocabularyPath: String?,
                           progress: ((Int, Int, String) -> Void)? = nil) throws -> Report {
        let model = try RWKVModelLoader.load(path: path)
        try model.config.requireNoAttention(path: path, for: "an importance matrix (it serves GGUF quantization)")
        if model is GoldFinchModel { throw GoldFinchCheckpoint.notRWKV(path) }
        let chunks = try TextChunks(textFile: text, vocabularySize: model.config.vocabSize, vocabularyPath: vocabularyPath,
                                    size: chunkSize, maxChunks: maxChunks)
        let (matrix, seconds) = try collect(model, chunks: chunks, processOutput: processOutput, progress: progress)
        try matrix.write(to: output, refusingToOverwrite: [path, text])
        let tokens = chunks.count * chunks.size
        return Report(model: path, output: output, textFile: text, tokenizer: chunks.tokenizer, chunkSize: chunks.size,
                      chunks: chunks.count, tokens: tokens, tensors: matrix.entries.count, processOutput: processOutput,
                      seconds: seconds, tokensPerSecond: Double(tokens) / max(seconds, 1e-9))
    }
}

extension ImportanceMatrix {
    /// The importance row of every planned tensor whose type weighs its errors with one, by GGUF
    /// name, as llama-quantize takes them: a tensor the matrix does not cover is quantized without
    /// weights; an entry whose width is not the tensor's row length is an error (llama.cpp
    /// refuses it too), and so is a row that is not finite and non-negative.
    public func rows(for plan: ConversionPlan, path: String) throws -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for t in plan.tensors where Quantizer.usesImportance(t.dtype) {
            guard let entry = entries[t.layout.name] else { continue }
            let rowLength = t.layout.shape.last ?? 0
            guard entry.width == rowLength, entry.sums.count == rowLength else {
                throw RWKVError(path, "entry \(t.layout.name) has \(entry.sums.count) values for rows of \(rowLength): it was made for another model")
            }
            let row = entry.importance
            guard row.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                throw RWKVError(path, "entry \(t.layout.name) holds negative or non-finite values")
            }
            out[t.layout.name] = row
        }
        return out
    }
}
