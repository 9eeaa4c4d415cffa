import CKernels

/// SHA-256 (FIPS 180-4), streaming: `update` with any number of byte chunks, then `finalize`.
/// Used to record which source file a conversion came from. The compression function is C
/// (CKernels/sha256.c: the x86 SHA extensions when present).
public struct SHA256: Sendable {
    private var state: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var pending: [UInt8] = []     // < 64 bytes not yet compressed
    private var length: UInt64 = 0        // bytes hashed so far

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress, bytes.count > 0 else { return }
        var n = bytes.count
        length &+= UInt64(n)
        if !pending.isEmpty {
            let take = min(64 - pending.count, n)
            pending += UnsafeRawBufferPointer(start: p, count: take)
            p += take
            n -= take
            if pending.count == 64 {
                pending.withUnsafeBytes { compress($0.baseAddress!, blocks: 1) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        let whole = n / 64
        if whole > 0 {
            compress(p, blocks: whole)
            p += whole * 64
            n -= whole * 64
        }
        if n > 0 { pending += UnsafeRawBufferPointer(start: p, count: n) }
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The 32-byte digest. The value is consumed: call on a copy to keep hashing.
    public mutating func finalize() -> [UInt8] {
        let bitLength = length &* 8
        var tail = pending
        tail.append(0x80)
        while tail.count % 64 != 56 { tail.append(0) }
        for i in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        tail.withUnsafeBytes { compress($0.baseAddress!, blocks: tail.count / 64) }
        pending = []
        return state.flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (24 - 8 * UInt32($0))) } }
    }

    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var h = SHA256()
        h.update(bytes)
        return h.finalize()
    }

    /// Hashes whole files, one after the other as a single stream (a sharded checkpoint's
    /// shards in order), reading 1 MiB pieces into one buffer (small enough to stay in cache
    /// between the read and the hashing). `progress` gets the bytes done so far.
    public static func hash(files: [InputFile], progress: ((Int) -> Void)? = nil) throws -> [UInt8] {
        var h = SHA256()
        var done = 0
        let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: min(1 << 20, max(files.map(\.size).max() ?? 1, 1)), alignment: 64)
        defer { piece.deallocate() }
        for file in files {
            var offset = 0
            while offset < file.size {
                let chunk = UnsafeMutableRawBufferPointer(rebasing: piece[0..<min(piece.count, file.size - offset)])
                try file.read(at: offset, into: chunk, what: "data (hashing)")
                h.update(UnsafeRawBufferPointer(chunk))
                offset += chunk.count
                done += chunk.count
                progress?(done)
            }
        }
        return h.finalize()
    }

    public static func hash(file: InputFile, progress: ((Int) -> Void)? = nil) throws -> [UInt8] {
        try hash(files: [file], progress: progress)
    }

    public static func hex(_ digest: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in digest { out += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether the SHA extensions are used on this CPU (else portable C).
    public static var usesSHAExtensions: Bool { csha256_has_sha_extensions() == 1 }

    private mutating func compress(_ data: UnsafeRawPointer, blocks: Int) {
        state.withUnsafeMutableBufferPointer {
            csha256_compress($0.baseAddress!, data.assumingMemoryBound(to: UInt8.self), blocks)
        }
    }
}
