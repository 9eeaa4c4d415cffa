import Dispatch
import Foundation
import Synchronization
import RWKVFormats
import RWKVText
import RWKVModel

public struct ConversionOptions: Sendable {
    public var type: OutputType = .f16
    /// A llama-quantize preset (Q4_K_M ...): replaces `type` by its base type and sets the file type.
    public var preset: LlamaPreset?
    /// A World-format vocabulary file; nil picks the bundled World vocabulary for 65536-row
    /// models and 256 byte tokens otherwise.
    public var vocabularyPath: String?
    public var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    /// The most encoding threads used (each keeps a chunk of scratch): far beyond any core count.
    public static let maxThreads = 1024
    public var keepF32: [String] = []
    /// The output matrix's type; nil: llama.cpp's choice (q6_K or q8_0) for quantized types, else `type` (ConversionPlan).
    public var outputTensorType: OutputType?
    /// token_embd.weight's type (`--token-embedding-type`), as llama-quantize takes it.
    public var tokenEmbeddingType: OutputType?
    /// `--tensor-type PATTERN=TYPE` rules, the first match wins (quantized types only).
    public var tensorTypes: [TensorTypeRule] = []
    /// `general.name`; nil uses the input's file name without its extension.
    public var name: String?
    /// The input format the command is for (pth-to-native: torch zip, safetensors-to-native:
    /// safetensors); nil accepts any checkpoint.
    public var expectedFormat: ModelFormat?
    /// Called as the work goes on with (bytes done, bytes in all, what is being done).
    public var progress: (@Sendable (Int, Int, String) -> Void)?
    /// Flush the output to disk before renaming it into place (`--sync`), so a power cut cannot
    /// leave it short. Off by default, as with cp and llama.cpp's converter: the output can be
    /// made again, and the flush costs more than the conversion when the disk is slower than
    /// memory. An interrupted or failed run leaves no output either way.
    public var sync: Bool = false
    /// Fine-tune adapters merged into the checkpoint before anything else (`--merge-lora`).
    public var adapters = AdapterList()
    /// An importance matrix (`--imatrix`: ours or llama-imatrix's, GGUF or legacy .dat): the
    /// quantizers that weigh their errors use its row for each tensor it covers, as llama-quantize.
    public var imatrixPath: String?
    /// Convert NaN and infinite weights as they are (`--allow-non-finite`, for experts) instead
    /// of refusing the checkpoint; the report then counts them.
    public var allowNonFinite = false
    /// Source elements per piece of a streamed tensor (2 MiB of bf16): small enough that a piece
    /// stays in cache from its read to its write, and a multiple of every block size. (Tests
    /// make it small, so the tiny fixtures cross piece boundaries.)
    var pieceElements = 1 << 20

    public init() {}
}

/// What a conversion did: `--json` prints it, `text` is the human summary.
public struct ConversionReport: Codable, Sendable {
    public struct Tensor: Codable, Sendable {
        public let name: String
        public let type: String
        public let shape: [Int]
        public let bytes: Int
        public let sources: [String]
        public let note: String?
        /// Finite values that became infinite: out of f16's range, or (quantized types) in a
        /// block whose f16 scale overflowed.
        public let overflowCount: Int
        /// NaN or infinite source values passed through (only with --allow-non-finite).
        public let nonFiniteCount: Int
    }

    public let input: String
    public let output: String
    public let inputFormat: String
    public let architecture: String
    public let type: String
    public let vocabulary: String
    public let sourceSHA256: String
    public let tensors: [Tensor]
    public let tensorBytes: Int
    public let fileBytes: Int
    public let seconds: Double
    public let overflowCount: Int
    public let overflowTensors: [String]
    /// NaN or infinite source values converted as they are (--allow-non-finite), and where.
    public let nonFiniteCount: Int
    public let nonFiniteTensors: [String]
    public let notes: [String]

    /// The warning --allow-non-finite earns, or nil.
    public var nonFiniteWarning: String? {
        nonFiniteCount == 0 ? nil
            : "\(nonFiniteCount) NaN or infinite source values converted anyway (--allow-non-finite) in \(nonFiniteTensors.joined(separator: ", ")) (f16/bf16 keep them; block types may turn them into 0 or infinite scales)"
    }

    public var text: String {
        var lines = [
            "\(Printable.escaped(input, limit: 1024)) -> \(Printable.escaped(output, limit: 1024))",
            "model:      \(architecture), \(inputFormat) input, sha256 \(sourceSHA256)",
            "type:       \(type) (\(tensors.filter { $0.type == type }.count) of \(tensors.count) tensors; the rest F32 as llama.cpp expects, or as noted)",
            "vocabulary: \(Printable.line(vocabulary))",
            "written:    \(formatBytes(fileBytes)) in \(String(format: "%.2f", seconds)) s",
        ]
        for n in notes { lines.append("note:       \(n)") }
        if overflowCount > 0 {
            lines.append("warning:    \(overflowCount) finite values became infinite (out of \(type)'s range) in \(overflowTensors.joined(separator: ", ")); consider --type bf16 or --keep-f32")
        }
        if let w = nonFiniteWarning { lines.append("warning:    \(w)") }
        return lines.joined(separator: "\n")
    }
}

/// Converts an RWKV-6/7 checkpoint into a GGUF file llama.cpp runs. The large matrices stream
/// through in pieces (`ConversionOptions.pieceElements`): read a piece, encode it on all cores,
/// append it on a writer thread while the next piece is read. Only the small transformed tensors
/// are built whole. Memory stays a few pieces plus the largest small tensor, whatever the file.
public enum Converter {
    public static func convert(input: String, output: String, options: ConversionOptions = ConversionOptions()) throws -> ConversionReport {
        let started = Date()
        let format = try ModelFormat.detect(path: input)
        if let expected = options.expectedFormat, expected != format {
            let command = format == .safetensors ? "safetensors-to-native" : format == .torchZip ? "pth-to-native"
                : format == .huggingFaceFolder ? "hf-to-native" : nil
            throw RWKVError(input, "is a \(format.rawValue)\(format == .huggingFaceFolder ? "" : " file"), not \(expected.rawValue)"
                                   + (command.map { "; use \($0) (or to-gguf, which takes any input)" } ?? ""))
        }
        let source = try options.adapters.merged(into: try Checkpoint.open(input))
        return try convert(source: source, format: format, output: output, options: options, started: started)
    }

    /// The Hugging Face folder a source reads, with or without adapters merged on top.
    static func folder(of source: TensorSource) -> HuggingFaceFolder? {
        let base = (source as? MergedSource)?.base ?? source
        return Checkpoint.underlying(base) as? HuggingFaceFolder
    }

    /// The World vocabulary file to use: `--vocab`, else a Hugging Face folder's own World
    /// vocabulary for a 65536-row model, else none (`Vocabulary.automatic`: the bundled one or bytes).
    static func vocabularyFile(for source: TensorSource, options: ConversionOptions, rows: Int) -> String? {
        if let path = options.vocabularyPath { return path }
        guard rows == Vocabulary.worldRows else { return nil }
        return folder(of: source)?.worldVocabularyPath
    }

    /// Converts an opened checkpoint (`source.path` is the input file, hashed for provenance).
    static func convert(source: TensorSource, format: ModelFormat, output: String, options: ConversionOptions,
                        started: Date = Date()) throws -> ConversionReport {
        let input = source.path
        // The hash (SHA-256, sequential, a core's worth of work) starts first and runs beside
        // everything else.
        let hashing = BackgroundHash(paths: folder(of: source)?.weightFiles ?? [input])
        let config = try RWKVConfig.detect(source)
        try config.requireGate(path: input, for: "llama.cpp's rwkv6 architecture")
        try config.requireNoAttention(path: input, for: "GGUF (llama.cpp has no RWKV-X architecture)")
        let plan = ConversionPlan(config: config, type: options.type, preset: options.preset, keepF32: options.keepF32,
                                  outputTensorType: options.outputTensorType, tokenEmbeddingType: options.tokenEmbeddingType,
                                  tensorTypes: options.tensorTypes)
        for (name, _) in plan.sourceShapes.sorted(by: { $0.key < $1.key }) {
            guard let t = source.info(name) else { throw RWKVError(input, "missing tensor \(name)") }
            guard t.dtype.isFloatingPoint, !t.dtype.isQuantized else {
                throw RWKVError(input, "tensor \(name) is \(t.dtype.rawValue); expected a floating-point checkpoint")
            }
        }
        let vocabularyPath = vocabularyFile(for: source, options: options, rows: config.vocabSize)
        let vocabulary = try vocabularyPath.map { try Vocabulary.world(path: $0, rows: config.vocabSize) }
            ?? Vocabulary.automatic(rows: config.vocabSize)
        let importanceRows = try options.imatrixPath.map { try ImportanceMatrix.read($0).rows(for: plan, path: $0) } ?? [:]

        // The source's SHA-256 goes in the header, which is written first: reserve it, hash the
        // input on another thread while converting, and fill it in before committing.
        let placeholder = String(repeating: "0", count: 64)
        let name = options.name ?? ((input as NSString).lastPathComponent as NSString).deletingPathExtension
        let metadata = plan.metadata(name: name, vocabulary: vocabulary,
                                     provenance: Provenance(sourceFile: (input as NSString).lastPathComponent, sourceSHA256: placeholder,
                                                             adapters: (source as? MergedSource)?.adapterDescriptions ?? []))
        let writer = try GGUFWriter(path: output, metadata: metadata, tensors: plan.tensors.map(\.info),
                                    refusingToOverwrite: [input] + [vocabularyPath, options.imatrixPath].compactMap { $0 },
                                    durable: options.sync)
        // Removed now on any failure, not whenever the last reference (held by a write job on
        // the writer thread until it is released) goes away.
        var finished = false
        defer { if !finished { writer.abandon() } }

        let totalBytes = plan.tensors.reduce(0) { $0 + $1.info.byteCount }
        let report = options.progress ?? { _, _, _ in }
        let pipeline = WritePipeline(writer: writer, threads: options.threads)   // clamped by ParallelEncoder
        let sourceBytes = ReusableBuffer()   // each piece of source bytes, read into the same memory
        defer { pipeline.drain() }   // no write may outlive the buffers, whatever happens
        var reports: [ConversionReport.Tensor] = []
        var done = 0
        for t in plan.tensors {
            report(done, totalBytes, t.layout.name)
            let (overflow, nonFinite) = try convert(t, from: source, reading: sourceBytes, inPiecesOf: options.pieceElements,
                                                    importance: importanceRows[t.layout.name], into: pipeline)
            if let (tensor, found) = nonFinite.first(where: { $0.1.count > 0 }), !options.allowNonFinite {
                throw found.error(path: input, tensor: tensor, advice: "--allow-non-finite converts it anyway")
            }
            done += t.info.byteCount
            reports.append(.init(name: t.layout.name, type: t.dtype.rawValue, shape: t.layout.shape, bytes: t.info.byteCount,
                                 sources: t.layout.sources, note: t.note, overflowCount: overflow,
                                 nonFiniteCount: nonFinite.reduce(0) { $0 + $1.1.count }))
        }
        try pipeline.finish()
        sourceBytes.release()
        report(done, totalBytes, "hashing the input")
        let digest = try hashing.wait { report(done, totalBytes, "hashing the input: \($0)%") }
        try writer.patchString(Provenance.sourceSHA256Key, digest)
        try writer.finish()
        finished = true

        let overflowing = reports.filter { $0.overflowCount > 0 }
        return ConversionReport(
            input: input, output: output, inputFormat: format.rawValue,
            architecture: "\(GGUFLayout.architecture(config.version)) (\(config.layerCount) layers, n_embd \(config.embeddingSize), vocab \(config.vocabSize))",
            type: options.type.rawValue, vocabulary: vocabulary.summary, sourceSHA256: digest,
            tensors: reports, tensorBytes: totalBytes, fileBytes: writer.bytesWritten,
            seconds: Date().timeIntervalSince(started),
            overflowCount: overflowing.reduce(0) { $0 + $1.overflowCount }, overflowTensors: overflowing.map(\.name),
            nonFiniteCount: reports.reduce(0) { $0 + $1.nonFiniteCount },
            nonFiniteTensors: reports.filter { $0.nonFiniteCount > 0 }.map(\.name),
            notes: ((source as? MergedSource).map { ["merged adapters: " + $0.adapterDescriptions.joined(separator: ", ")] } ?? [])
                + plan.notes.map { "\($0.name): \($0.note)" })
    }

    /// Encodes one planned tensor and queues its bytes for writing; returns how many values
    /// overflowed, and the NaN or infinite values found in each source tensor (counted in the
    /// pieces as they pass, so the check costs no extra read). A tensor copied as is (the large
    /// matrices) streams through in pieces, read, encoded and written one after another; the
    /// small transformed ones are built as floats.
    /// `importance`: the tensor's importance-matrix row (one weight per column), when the
    /// plan's type weighs with it; pieces and chunks are then whole rows.
    static func convert(_ t: PlannedTensor, from source: TensorSource, reading buffer: ReusableBuffer,
                        inPiecesOf pieceElements: Int, importance: [Float]? = nil,
                        into pipeline: WritePipeline) throws -> (Int, [(String, NonFiniteCount)]) {
        precondition(pieceElements > 0 && pieceElements % t.dtype.blockSize == 0, "pieces must hold whole blocks")   // caller's contract
        let layout = t.layout
        // (An empty tensor takes the other path: no piece would ever complete it in the writer.)
        if layout.transform == .reshape, layout.sources.count == 1, layout.elementCount > 0, let info = source.info(layout.sources[0]) {
            var overflow = 0
            var nonFinite = NonFiniteCount()
            var start = 0
            let piece = importance.map { max(1, pieceElements / $0.count) * $0.count } ?? pieceElements
            try source.read(layout.sources[0], inPiecesOf: piece * info.dtype.blockBytes, using: buffer) { piece in
                let encoder = try pipeline.freeEncoder()
                let (bytes, n, found) = encoder.encode(piece, of: info.dtype, as: t.dtype, importance: importance)
                pipeline.write(bytes, from: encoder)
                overflow += n
                nonFinite.add(found, at: start)
                start += piece.count / info.dtype.blockBytes
            }
            return (overflow, [(layout.sources[0], nonFinite)])
        }
        let inputs = try layout.sources.map { try source.floats($0) }
        let nonFinite = zip(layout.sources, inputs.map { NonFiniteCount.scan($0) }).map { ($0, $1) }
        let values = GGUFLayout.apply(layout, to: inputs)
        let encoder = try pipeline.freeEncoder()
        let (bytes, overflow) = values.withUnsafeBufferPointer { v in
            encoder.encode(count: layout.elementCount, as: t.dtype) { range, _ in UnsafeBufferPointer(rebasing: v[range]) }
        }
        pipeline.write(bytes, from: encoder)
        return (overflow, nonFinite)
    }
}

/// Writes encoded bytes on a background thread while the next piece is read and encoded. Two
/// encoders (each with its own output buffer) take turns; a buffer is reused only once its
/// write is done.
final class WritePipeline: @unchecked Sendable {
    private let writer: GGUFWriter
    private let encoders: [ParallelEncoder]
    private let pending = [DispatchGroup(), DispatchGroup()]
    private let queue = DispatchQueue(label: "rwkv-convert.gguf-writer")
    private let lock = NSLock()
    private var failure: Error?
    private var turn = 0

    init(writer: GGUFWriter, threads: Int) {
        self.writer = writer
        encoders = [ParallelEncoder(threads: threads), ParallelEncoder(threads: threads)]
    }

    /// An encoder whose buffer is free; throws a failed write's error.
    func freeEncoder() throws -> ParallelEncoder {
        turn = 1 - turn
        pending[turn].wait()
        try rethrowFailure()
        return encoders[turn]
    }

    /// Queues `bytes` (in `encoder`'s buffer) to be appended after everything queued before.
    func write(_ bytes: UnsafeRawBufferPointer, from encoder: ParallelEncoder) {
        let group = pending[encoders[0] === encoder ? 0 : 1]
        group.enter()
        let job = UnsafeSendable((self, bytes))
        queue.async {
            let (pipeline, bytes) = job.value
            do { try pipeline.writer.append(bytes) } catch { pipeline.record(error) }
            group.leave()
        }
    }

    /// Waits for every queued write.
    func drain() { pending.forEach { $0.wait() } }

    /// Waits for every queued write and throws the first failure.
    func finish() throws {
        drain()
        try rethrowFailure()
    }

    private func record(_ error: Error) {
        lock.lock(); defer { lock.unlock() }
        if failure == nil { failure = error }
    }

    private func rethrowFailure() throws {
        lock.lock(); defer { lock.unlock() }
        if let failure { throw failure }
    }
}

/// Encodes values in chunks of whole blocks on several threads, into an output buffer kept from
/// one call to the next (so it is not mapped and faulted in afresh each time).
final class ParallelEncoder {
    let threads: Int
    /// Elements per chunk, the unit of work of one thread: a multiple of every block size, small
    /// enough to stay in cache.
    static let chunkElements = 1 << 15
    private var buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// One chunk of float scratch per worker, allocated once (again only for rows longer than a chunk).
    private var scratch: [UnsafeMutableBufferPointer<Float>]

    init(threads: Int) {
        self.threads = min(max(1, threads), ConversionOptions.maxThreads)
        scratch = (0..<self.threads).map { _ in .allocate(capacity: Self.chunkElements) }
    }

    deinit {
        buffer.deallocate()
        scratch.forEach { $0.deallocate() }
    }

    /// Encodes `source`, elements of `sourceType` (a float type), as `dtype`: straight from the
    /// source bytes when ElementCodec has a direct path, else through floats. Also counts the
    /// source's NaN and infinite values, chunk by chunk on the same threads while the chunk is
    /// in cache.
    /// With an `importance` row, `source` is whole rows and the chunks are too (ggml's weighted
    /// q4_0..q5_1 scale by a whole row's mean square).
    func encode(_ source: UnsafeRawBufferPointer, of sourceType: DType, as dtype: DType,
                importance: [Float]? = nil) -> (UnsafeRawBufferPointer, Int, NonFiniteCount) {
        let stride = sourceType.blockBytes
        let count = source.count / stride
        let chunk = importance.map { max(1, Self.chunkElements / $0.count) * $0.count } ?? Self.chunkElements
        let chunks = (count + chunk - 1) / chunk
        // One slot per chunk: chunks are disjoint, so workers write different slots.
        let found = UnsafeMutableBufferPointer<NonFiniteCount>.allocate(capacity: max(chunks, 1))
        found.initialize(repeating: NonFiniteCount())
        defer { found.deallocate() }
        func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: source[range.lowerBound * stride..<range.upperBound * stride])
        }
        let encoded: (UnsafeRawBufferPointer, Int)
        if importance == nil, ElementCodec.canTranscode(from: sourceType, to: dtype) {
            encoded = encodeChunks(count: count, as: dtype) { range, dst, _ in
                found[range.lowerBound / chunk] = NonFiniteCount.scan(bytes(range), as: sourceType)
                return ElementCodec.transcodeChunk(bytes(range), from: sourceType, into: dst, as: dtype)
            }
        } else {
            encoded = withImportance(importance) { weights in
                encodeChunks(count: count, as: dtype, chunkElements: chunk) { range, dst, scratch in
                    found[range.lowerBound / chunk] = NonFiniteCount.scan(bytes(range), as: sourceType)
                    let values = UnsafeMutableBufferPointer(rebasing: scratch[0..<range.count])
                    ElementCodec.decodeChunk(bytes(range), as: sourceType, into: values)
                    return ElementCodec.encodeChunk(UnsafeBufferPointer(values), as: dtype, into: dst, importance: weights)
                }
            }
        }
        var total = NonFiniteCount()
        for (i, f) in found.enumerated() { total.add(f, at: i * chunk) }
        return (encoded.0, encoded.1, total)
    }

    /// `body` with the importance row as the quantizers take it: every chunk starts a row.
    private func withImportance<R>(_ row: [Float]?, _ body: (Quantizer.Importance?) -> R) -> R {
        guard let row else { return body(nil) }
        return row.withUnsafeBufferPointer { body(Quantizer.Importance(row: $0, firstColumn: 0)) }
    }

    /// `values(range, scratch)` gives the values of `range`, either in `scratch` (room for one
    /// chunk, owned by the calling thread) or from wherever they already are. Returns the encoded
    /// bytes (valid until the next call) and how many values overflowed to infinity.
    func encode(count: Int, as dtype: DType,
                values: (Range<Int>, UnsafeMutableBufferPointer<Float>) -> UnsafeBufferPointer<Float>) -> (UnsafeRawBufferPointer, Int) {
        withoutActuallyEscaping(values) { values in
            encodeChunks(count: count, as: dtype) { range, dst, scratch in
                ElementCodec.encodeChunk(values(range, scratch), as: dtype, into: dst)
            }
        }
    }

    /// The loop under `encode`: `chunk(range, bytes, scratch)` writes the encoded `bytes` of the
    /// values in `range` (using `scratch` as it likes) and returns how many overflowed.
    func encodeChunks(count: Int, as dtype: DType, chunkElements: Int = ParallelEncoder.chunkElements,
                      chunk encodeChunk: (Range<Int>, UnsafeMutableRawBufferPointer, UnsafeMutableBufferPointer<Float>) -> Int)
        -> (UnsafeRawBufferPointer, Int) {
        let size = dtype.byteCount(elements: count) ?? 0
        if buffer.count < size {
            buffer.deallocate()
            buffer = .allocate(byteCount: size, alignment: 64)
        }
        if chunkElements > scratch[0].count {   // whole rows longer than a chunk
            scratch.forEach { $0.deallocate() }
            scratch = (0..<threads).map { _ in .allocate(capacity: chunkElements) }
        }
        let chunks = (count + chunkElements - 1) / chunkElements
        let workers = max(1, min(threads, chunks))
        var overflow = [Int](repeating: 0, count: workers)
        withoutActuallyEscaping(encodeChunk) { encodeChunk in
            overflow.withUnsafeMutableBufferPointer { counts in
                let outBase = buffer.baseAddress
                let countsBase = counts.baseAddress!
                // Each worker takes every `workers`-th chunk; chunks write disjoint bytes.
                let scratch = self.scratch
                let work = UnsafeSendable { (worker: Int) in
                    var chunk = worker
                    while chunk < chunks {
                        let range = chunk * chunkElements..<min(count, (chunk + 1) * chunkElements)
                        let byteStart = range.lowerBound / dtype.blockSize * dtype.blockBytes
                        let byteCount = range.count / dtype.blockSize * dtype.blockBytes
                        let dst = UnsafeMutableRawBufferPointer(start: outBase.map { $0 + byteStart }, count: byteCount)
                        countsBase[worker] += encodeChunk(range, dst, scratch[worker])
                        chunk += workers
                    }
                }
                if workers == 1 {
                    work.value(0)
                } else {
                    DispatchQueue.concurrentPerform(iterations: workers) { work.value($0) }
                }
            }
        }
        return (UnsafeRawBufferPointer(rebasing: buffer[0..<size]), overflow.reduce(0, +))
    }
}

/// A pointer handed to worker threads that write disjoint parts of it.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Hashes a file on a background thread.
final class BackgroundHash: @unchecked Sendable {
    private let group = DispatchGroup()
    private var result: Result<String, Error> = .failure(RWKVError(nil, "hash not computed"))
    /// Bytes hashed so far, and the file's size, for a progress line while the hash is awaited.
    private let hashed = Atomic<Int>(0)
    private let size: Int

    /// Several paths (a sharded checkpoint) are hashed as one stream, in order.
    init(paths: [String]) {
        let files = Result { try paths.map { try InputFile($0) } }
        size = (try? files.get().reduce(0) { $0 + $1.size }) ?? 0
        group.enter()
        DispatchQueue.global(qos: .userInitiated).async {
            self.result = Result {
                SHA256.hex(try SHA256.hash(files: try files.get()) { self.hashed.store($0, ordering: .relaxed) })
            }
            self.group.leave()
        }
    }

    /// Waits for the digest; `progress(percent)` is called a few times a second meanwhile (the
    /// conversion can finish first: the hash of a large file takes a core for seconds).
    func wait(progress: (Int) -> Void = { _ in }) throws -> String {
        while group.wait(timeout: .now() + .milliseconds(200)) == .timedOut {
            progress(size > 0 ? hashed.load(ordering: .relaxed) * 100 / size : 0)
        }
        return try result.get()
    }
}
