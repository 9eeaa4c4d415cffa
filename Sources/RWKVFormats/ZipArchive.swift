import CZip

/// Read-only access to a zip archive through libzip (Debian's 1.7.3).
///
/// What libzip does for us: finds and parses the central directory (zip64 included) and locates a
/// record's data through its local header.
/// What we do ourselves: refuse compressed and encrypted records before reading them, cap every
/// record's size by the file's size (so no allocation exceeds the file), and always read a record
/// from its first byte to its last the first time any part of it is wanted, checking its CRC-32
/// against the central directory at the end (see `RecordStream`); later reads of a checked record
/// read only what they need, so a file whose hundreds of tensors are views of one large storage
/// costs one pass over it, not one per tensor.
/// We open without ZIP_CHECKCONS: like torch's own reader (miniz) we trust the central directory,
/// so a local header that disagrees with it in a harmless way (a tool that patched a record and
/// wrote its CRC into the local header too) is accepted where torch accepts it.
/// libzip 1.7.3 cannot tell where a record's data starts in the file, so zero-copy (pread or mmap
/// of the data) would need our own central-directory parser; for stored records a libzip read
/// costs one copy, the same as pread, so we do not write one.
final class ZipArchive {
    struct Record {
        let index: UInt64
        let name: String
        let size: Int
        let compressedSize: Int
        let crc: UInt32
        let method: Int32
        let encrypted: Bool
        var isStored: Bool { method == ZIP_CM_STORE }
    }

    let path: String
    let records: [Record]
    private let handle: OpaquePointer
    /// Records whose CRC-32 has been checked (indices). Callers serialise reads (libzip handles
    /// are not thread-safe), so this needs no lock of its own.
    private var checked = Set<UInt64>()
    /// Record bytes read so far, for tests.
    private(set) var bytesRead = 0

    init(path: String) throws {
        self.path = path
        var code: Int32 = 0
        guard let za = BytePath.with(path, { zip_open($0, ZIP_RDONLY, &code) }) else {
            throw RWKVError(path, "damaged or truncated zip archive (libzip: \(Self.message(code: code)))")
        }
        handle = za
        let n = zip_get_num_entries(za, 0)
        var records: [Record] = []
        for i in 0..<UInt64(max(n, 0)) {
            var st = zip_stat_t()
            guard zip_stat_index(za, i, ZIP_FL_ENC_GUESS, &st) == 0, let cname = st.name else {
                throw RWKVError(path, "zip entry \(i) is unreadable: \(String(cString: zip_strerror(za)))")
            }
            guard st.size <= UInt64(Int.max), st.comp_size <= UInt64(Int.max) else {
                throw RWKVError(path, "zip entry \(String(cString: cname)) has an impossible size")
            }
            records.append(Record(index: i, name: String(cString: cname), size: Int(st.size), compressedSize: Int(st.comp_size),
                                  crc: st.crc, method: Int32(st.comp_method), encrypted: st.encryption_method != UInt16(ZIP_EM_NONE)))
        }
        self.records = records
    }

    deinit { zip_discard(handle) }

    static func message(code: Int32) -> String {
        var error = zip_error_t()
        zip_error_init_with_code(&error, code)
        defer { zip_error_fini(&error) }
        return String(cString: zip_error_strerror(&error))
    }

    /// Bytes `range` of a stored record. The whole record is read so that its CRC-32 is
    /// checked; bytes outside `range` go through a small scratch buffer and are dropped.
    func read(_ record: Record, range: Range<Int>) throws -> [UInt8] {
        // Filled by the read, so not zeroed first (a throw leaves it empty).
        try [UInt8](unsafeUninitializedCapacity: range.count) { buffer, initialized in
            // One piece: the whole range, read straight into the array.
            try read(record, range: range, inPiecesOf: UnsafeMutableRawBufferPointer(buffer)) { _ in }
            initialized = range.count
        }
    }

    /// Bytes `range` of a record handed to `body` in order, a piece at a time: each piece is
    /// read into `piece` (the last may be shorter) and is valid only during the call. The rest
    /// of the record is read too and its CRC-32 compared with the central directory's: a
    /// corrupt record throws after its last piece has been seen, so callers must not keep what
    /// they made of it.
    func read(_ record: Record, range: Range<Int>, inPiecesOf piece: UnsafeMutableRawBufferPointer,
              _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(range.isEmpty || piece.count > 0, "ZipArchive.read: no room for a piece")   // caller's contract
        guard record.isStored, !record.encrypted else {
            throw RWKVError(path, "record \(record.name) is compressed or encrypted")
        }
        guard record.compressedSize == record.size else {
            throw RWKVError(path, "stored record \(record.name) has two sizes (\(record.size) and \(record.compressedSize) bytes)")
        }
        guard range.lowerBound >= 0, range.upperBound <= record.size else {
            throw RWKVError(path, "bytes \(range) lie outside record \(record.name) (\(record.size) bytes)")
        }
        let whole = !checked.contains(record.index)
        var stream = RecordStream(archive: self, record: record, from: whole ? 0 : range.lowerBound)
        defer {
            bytesRead += stream.position - (whole ? 0 : range.lowerBound)
            stream.close()
        }
        var scratch = [UInt8](repeating: 0, count: whole ? min(1 << 20, max(record.size - range.count, 1)) : 0)
        try scratch.withUnsafeMutableBytes { s in
            while stream.position < range.lowerBound {
                try stream.fill(s.baseAddress!, min(s.count, range.lowerBound - stream.position))
            }
        }
        if let base = piece.baseAddress, piece.count > 0 {
            while stream.position < range.upperBound {
                let count = min(piece.count, range.upperBound - stream.position)
                try stream.fill(base, count)
                try body(UnsafeRawBufferPointer(start: base, count: count))
            }
        }
        guard whole else { return }
        try scratch.withUnsafeMutableBytes { s in
            while stream.position < record.size {
                try stream.fill(s.baseAddress!, min(s.count, record.size - stream.position))
            }
        }
        guard stream.crc.value == record.crc else { throw RWKVError(path, "record \(record.name) is corrupt: CRC-32 mismatch") }
        checked.insert(record.index)
    }

    /// A stored record's bytes in order from `start`, with their CRC-32 (from byte 0). libzip
    /// checks a record's CRC-32 only when it reads the record whole, with zlib's crc32; we read
    /// it as two windows (all but the last byte, then the last byte), which libzip reads
    /// unchecked, and check it ourselves with `CRC32` (PCLMULQDQ, about 3x zlib's speed: on a
    /// .pth this was a third of the reading thread's work). A 1-byte record is one window, the
    /// whole record, which libzip would check only on a read past its end (we never make one).
    /// Should libzip check windows too one day, it only costs time.
    private struct RecordStream {
        let archive: ZipArchive
        let record: Record
        private(set) var position = 0
        private(set) var crc = CRC32()
        private var source: OpaquePointer?
        private var windowEnd: Int

        init(archive: ZipArchive, record: Record, from start: Int) {
            self.archive = archive
            self.record = record
            position = start
            windowEnd = start
        }

        /// Reads exactly `count` bytes into `buffer`, failing on a short read or a libzip error.
        mutating func fill(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws {
            var done = 0
            while done < count {
                if position + done == windowEnd { try openNextWindow(at: position + done) }
                guard let source else { throw RWKVError(archive.path, "cannot read record \(record.name): no window open") }
                let n = zip_source_read(source, buffer + done, UInt64(min(count - done, windowEnd - position - done)))
                guard n > 0 else {
                    let reason = n < 0 ? String(cString: zip_error_strerror(zip_source_error(source))) : "unexpected end of data"
                    throw RWKVError(archive.path, "cannot read record \(record.name) at byte \(position + done): \(reason)")
                }
                done += Int(n)
            }
            crc.update(UnsafeRawBufferPointer(start: buffer, count: count))
            position += count
        }

        private mutating func openNextWindow(at start: Int) throws {
            close()
            let end = start < record.size - 1 ? record.size - 1 : record.size
            guard let s = zip_source_zip(archive.handle, archive.handle, record.index, 0, UInt64(start), Int64(end - start)) else {
                throw RWKVError(archive.path, "cannot open record \(record.name): \(String(cString: zip_strerror(archive.handle)))")
            }
            guard zip_source_open(s) == 0 else {
                let reason = String(cString: zip_error_strerror(zip_source_error(s)))
                zip_source_free(s)
                throw RWKVError(archive.path, "cannot open record \(record.name): \(reason)")
            }
            source = s
            windowEnd = end
        }

        mutating func close() {
            if let source {
                zip_source_close(source)
                zip_source_free(source)
            }
            source = nil
        }
    }
}
