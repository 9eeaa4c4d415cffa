import CZip

/// Read-only access to a zip archive through libzip (Debian's 1.7.3).
///
/// What libzip does for us: finds and parses the central directory (zip64 included), locates a
/// record's data through its local header, and checks the record's CRC-32 when it is read to its
/// end (a mismatch fails the read that reaches the end).
/// What we do ourselves: refuse compressed and encrypted records before reading them, cap every
/// record's size by the file's size (so no allocation exceeds the file), and always read a record
/// from its first byte to its last, even when only a part is wanted, so the CRC-32 is checked.
/// We open without ZIP_CHECKCONS: like torch's own reader (miniz) we trust the central directory,
/// so a local header that disagrees with it in a harmless way (a tool that patched a record and
/// wrote its CRC into the local header too) is accepted where torch accepts it.
/// libzip 1.7.3 cannot tell where a record's data starts in the file, so zero-copy (pread or mmap
/// of the data) would need our own central-directory parser; for stored records zip_fread costs
/// one copy, the same as pread, so we do not write one.
final class ZipArchive {
    struct Record {
        let index: UInt64
        let name: String
        let size: Int
        let compressedSize: Int
        let method: Int32
        let encrypted: Bool
        var isStored: Bool { method == ZIP_CM_STORE }
    }

    let path: String
    let records: [Record]
    private let handle: OpaquePointer

    init(path: String) throws {
        self.path = path
        var code: Int32 = 0
        guard let za = zip_open(path, ZIP_RDONLY, &code) else {
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
                                  method: Int32(st.comp_method), encrypted: st.encryption_method != UInt16(ZIP_EM_NONE)))
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

    /// Bytes `range` of a stored record. The whole record is read so that libzip checks its
    /// CRC-32; bytes outside `range` go through a small scratch buffer and are dropped.
    func read(_ record: Record, range: Range<Int>) throws -> [UInt8] {
        // Filled by zip_fread, so not zeroed first (a throw leaves it empty).
        try [UInt8](unsafeUninitializedCapacity: range.count) { buffer, initialized in
            try read(record, range: range, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = range.count
        }
    }

    /// `read(_:range:)` into `out` (exactly `range.count` bytes), a caller's reused memory.
    func read(_ record: Record, range: Range<Int>, into out: UnsafeMutableRawBufferPointer) throws {
        precondition(out.count == range.count, "ZipArchive.read: buffer of \(out.count) bytes for \(range.count)")   // caller's contract
        try read(record, range: range, inPiecesOf: out) { _ in }
    }

    /// Bytes `range` of a record handed to `body` in order, a piece at a time: each piece is
    /// read into `piece` (the last may be shorter) and is valid only during the call. The rest
    /// of the record is read too, so libzip checks its CRC-32: a corrupt record throws after
    /// its last piece has been seen, so callers must not keep what they made of it.
    func read(_ record: Record, range: Range<Int>, inPiecesOf piece: UnsafeMutableRawBufferPointer,
              _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(range.isEmpty || piece.count > 0, "ZipArchive.read: no room for a piece")   // caller's contract
        guard record.isStored, !record.encrypted else {
            throw RWKVError(path, "record \(record.name) is compressed or encrypted")
        }
        guard range.lowerBound >= 0, range.upperBound <= record.size else {
            throw RWKVError(path, "bytes \(range) lie outside record \(record.name) (\(record.size) bytes)")
        }
        guard let file = zip_fopen_index(handle, record.index, 0) else {
            throw RWKVError(path, "cannot open record \(record.name): \(String(cString: zip_strerror(handle)))")
        }
        defer { zip_fclose(file) }

        var scratch = [UInt8](repeating: 0, count: min(1 << 20, max(record.size - range.count, 1)))
        var position = 0
        // Reads exactly `count` bytes into `buffer`, failing on a short read or a libzip error.
        func fill(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws {
            var done = 0
            while done < count {
                let n = zip_fread(file, buffer + done, UInt64(count - done))
                guard n > 0 else { throw readError(file, record, at: position + done) }
                done += Int(n)
            }
            position += count
        }
        try scratch.withUnsafeMutableBytes { s in
            while position < range.lowerBound {
                try fill(s.baseAddress!, min(s.count, range.lowerBound - position))
            }
        }
        if let base = piece.baseAddress, piece.count > 0 {
            while position < range.upperBound {
                let count = min(piece.count, range.upperBound - position)
                try fill(base, count)
                try body(UnsafeRawBufferPointer(start: base, count: count))
            }
        }
        try scratch.withUnsafeMutableBytes { s in
            while position < record.size {
                try fill(s.baseAddress!, min(s.count, record.size - position))
            }
            // The read that finds the end is the one where libzip compares the CRC-32.
            let n = zip_fread(file, s.baseAddress!, UInt64(s.count))
            guard n == 0 else {
                throw n < 0 ? readError(file, record, at: position) : RWKVError(path, "record \(record.name) is longer than its directory entry says")
            }
        }
    }

    private func readError(_ file: OpaquePointer, _ record: Record, at offset: Int) -> RWKVError {
        let error = zip_file_get_error(file)
        if let error, zip_error_code_zip(error) == ZIP_ER_CRC {
            return RWKVError(path, "record \(record.name) is corrupt: CRC-32 mismatch")
        }
        return RWKVError(path, "cannot read record \(record.name) at byte \(offset): \(String(cString: zip_file_strerror(file)))")
    }
}
