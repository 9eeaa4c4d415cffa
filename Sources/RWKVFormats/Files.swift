#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A regular file opened for reading with positioned reads. Every read is bounds-checked
/// against the size seen at open, so a lying header cannot make us allocate or read past the end.
/// (We use pread rather than mmap: a file truncated under a live mapping raises SIGBUS.)
public final class InputFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    private let fd: Int32

    public init(_ path: String) throws {
        var st = stat()
        guard BytePath.with(path, { stat($0, &st) }) == 0 else {
            throw RWKVError(path, "cannot open: \(String(cString: strerror(errno)))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw RWKVError(path, "is a directory, not a model file") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw RWKVError(path, "is not a regular file") }
        let fd = BytePath.with(path) { open($0, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw RWKVError(path, "cannot open: \(String(cString: strerror(errno)))") }
        self.fd = fd
        self.path = path
        self.size = Int(st.st_size)
    }

    deinit { close(fd) }

    /// Reads exactly `count` bytes at `offset`, or throws naming `what` was being read.
    public func read(at offset: Int, count: Int, what: String = "data") throws -> [UInt8] {
        try checkRange(offset, count, what)
        // Filled by pread, so not zeroed first (a throw leaves it empty).
        return try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try read(at: offset, into: UnsafeMutableRawBufferPointer(buffer), what: what)
            initialized = count
        }
    }

    /// Reads exactly `buffer.count` bytes at `offset` into `buffer` (a caller's reused memory,
    /// so large reads need not fault in and zero fresh pages), or throws naming `what`.
    public func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer, what: String = "data") throws {
        let count = buffer.count
        try checkRange(offset, count, what)
        var done = 0
        while done < count {
            let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw RWKVError(path, "read error in \(what): file shorter than expected") }
            done += n
        }
    }

    private func checkRange(_ offset: Int, _ count: Int, _ what: String) throws {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw RWKVError(path, "\(what) at offset \(offset) (\(count) bytes) runs past the end of the file (\(size) bytes)")
        }
    }

    /// The first bytes of the file (fewer if it is shorter), for format sniffing.
    public func prefix(_ count: Int) throws -> [UInt8] {
        try read(at: 0, count: min(count, size))
    }
}

/// An output written to a temporary file beside its destination and given the destination's name
/// only by `commit()`. On Linux the temporary file has no name at all (`O_TMPFILE`): it is linked
/// into the directory when complete, so not even a SIGKILL or a crash mid-write leaves anything
/// behind. Where `O_TMPFILE` is not available (another system, a file system without it) it is a
/// named `.rwkv-XXXXXX` beside the destination, renamed into place; dropped without commit (an
/// error, Ctrl-C) it is removed, so a half-written output never appears under the final name.
///
/// A durable output is flushed to disk (fsync) before the rename, so even a power cut leaves
/// either the whole file or none. Without that, a crash of the machine (not of the program)
/// soon after the rename can leave the file short: the choice of `cp`, torch.save and
/// llama.cpp's converter, for outputs that can be made again, and several times faster when
/// the disk is slower than memory.
public final class AtomicOutputFile {
    public let path: String
    /// The named temporary file, or nil when it is unnamed (`O_TMPFILE`) until `commit()`.
    public let temporaryPath: String?
    /// The directory the output goes to (where an unnamed file lives until it is linked).
    let directory: String
    /// Where the finished file is renamed to: `path`, or the file a symbolic link there points
    /// to (written through, as cp does, rather than replacing the link: /dev/stdout is one).
    let destination: String
    public let durable: Bool
    private var fd: Int32
    private var committed = false
    private var abandoned = false
    public private(set) var bytesWritten = 0

    /// - Parameters:
    ///   - inputs: paths that must not be overwritten (the files being converted).
    ///   - durable: flush to disk before the rename.
    public init(_ path: String, refusingToOverwrite inputs: [String] = [], durable: Bool = true) throws {
        self.durable = durable
        let target = Self.canonical(path)
        for input in inputs where Self.canonical(input) == target {
            throw RWKVError(path, "refusing to overwrite the input file")
        }
        var link = stat()
        let destination = BytePath.with(path, { lstat($0, &link) }) == 0 && (link.st_mode & S_IFMT) == S_IFLNK ? Self.canonical(path) : path
        var st = stat()
        if BytePath.with(destination, { stat($0, &st) }) == 0 {
            // Never replace what is not a regular file: renaming over /dev/null (as root) or a FIFO
            // would swap a device for a plain file. Outputs are finished in place by seeking back
            // (the GGUF header's hash), which such destinations cannot do either.
            switch st.st_mode & S_IFMT {
            case S_IFREG: break
            case S_IFDIR: throw RWKVError(path, "is a directory; give an output file name")
            default:
                throw RWKVError(path, "exists and is not a regular file (\(Self.kind(st.st_mode))); give an output file name "
                                      + "(outputs are written to a temporary file and renamed into place)")
            }
        }
        var dir = destination.contains("/") ? String(destination[..<destination.lastIndex(of: "/")!]) : "."
        if dir.isEmpty { dir = "/" }
        self.path = path
        self.destination = destination
        self.directory = dir
        #if os(Linux)
        let unnamed = BytePath.with(dir) { open($0, Self.openTemporaryFile | O_WRONLY | O_CLOEXEC, 0o644) }
        #else
        let unnamed: Int32 = -1
        #endif
        if unnamed >= 0 {
            fchmod(unnamed, 0o644)   // as the named file gets, whatever the umask
            fd = unnamed
            temporaryPath = nil
            return
        }
        let (fd, name) = try Self.namedTemporary(in: dir, for: path)
        self.fd = fd
        temporaryPath = name
        CleanupOnSignal.shared.register(name)
    }

    #if os(Linux)
    /// Linux's O_TMPFILE (`__O_TMPFILE | O_DIRECTORY`; Glibc's macro is not imported into Swift).
    static let openTemporaryFile: Int32 = 0o20000000 | O_DIRECTORY
    #endif

    /// A new `.rwkv-XXXXXX` in `dir`: short and fixed, so that a legal 255-byte output name still
    /// leaves room for it.
    static func namedTemporary(in dir: String, for path: String) throws -> (Int32, String) {
        var template = BytePath.encode("\(dir)/.rwkv-XXXXXX")
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw RWKVError(path, "cannot create a temporary file in \(dir): \(String(cString: strerror(errno)))")
        }
        fchmod(fd, 0o644)
        return (fd, BytePath.decode(template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }))
    }

    /// A second descriptor of the output, for writes at an offset (pwrite) beside the sequential ones.
    public func duplicateDescriptor() throws -> Int32 {
        let d = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard d >= 0 else { throw RWKVError(path, "cannot duplicate the output's descriptor: \(String(cString: strerror(errno)))") }
        return d
    }

    deinit {
        if !committed { abandon() }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw RWKVError(path, "write failed: \(String(cString: strerror(errno)))") }
            done += n
        }
        bytesWritten += bytes.count
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Writes `count` zero bytes (alignment padding).
    public func pad(_ count: Int) throws {
        if count > 0 { try write([UInt8](repeating: 0, count: count)) }
    }

    /// Flushes (when durable), closes and renames into place.
    public func commit() throws {
        guard !committed else { return }
        guard !abandoned else { throw RWKVError(path, "output was abandoned; nothing to finish") }
        let written = fd
        fd = -1   // closed below whatever happens: a failed close must not be retried (the number may be reused)
        let flushed = !durable || fsync(written) == 0
        let flushError = errno
        guard flushed else {
            close(written)
            throw RWKVError(path, "cannot finish writing: \(String(cString: strerror(flushError)))")
        }
        var named = temporaryPath
        if named == nil {
            // Unnamed: link it in under the destination's name when that is free (atomic, and
            // nothing ever shows under another name), else under a temporary one renamed over it.
            let proc = "/proc/self/fd/\(written)"
            if BytePath.with(destination, { linkat(AT_FDCWD, proc, AT_FDCWD, $0, AT_SYMLINK_FOLLOW) }) == 0 {
                committed = true
            } else if errno == EEXIST {
                named = try linkUnderTemporaryName(proc)
            } else {
                let reason = String(cString: strerror(errno))
                close(written)
                throw RWKVError(path, "cannot give the finished output its name: \(reason)")
            }
        }
        guard close(written) == 0 || committed else {
            let reason = String(cString: strerror(errno))
            if let named { BytePath.with(named) { _ = unlink($0) } }
            throw RWKVError(path, "cannot finish writing: \(reason)")
        }
        if committed { return }
        let temporary = named!
        guard BytePath.with(temporary, { t in BytePath.with(destination) { rename(t, $0) } }) == 0 else {
            let reason = String(cString: strerror(errno))
            BytePath.with(temporary) { _ = unlink($0) }
            throw RWKVError(path, "cannot rename the finished output into place: \(reason)")
        }
        committed = true
        CleanupOnSignal.shared.unregister(temporary)
    }

    /// Links the unnamed file at `proc` into the directory as a new `.rwkv-XXXXXX`, registered for
    /// removal on a signal until it is renamed (the moment between the two is all a SIGKILL can hit).
    private func linkUnderTemporaryName(_ proc: String) throws -> String {
        for _ in 0..<100 {
            let name = directory + "/.rwkv-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
            CleanupOnSignal.shared.register(name)
            if BytePath.with(name, { linkat(AT_FDCWD, proc, AT_FDCWD, $0, AT_SYMLINK_FOLLOW) }) == 0 { return name }
            CleanupOnSignal.shared.unregister(name)
            guard errno == EEXIST else { break }
        }
        throw RWKVError(path, "cannot give the finished output a name in \(directory): \(String(cString: strerror(errno)))")
    }

    /// Removes the temporary file; the destination is left as it was.
    public func abandon() {
        guard !committed, !abandoned else { return }
        abandoned = true
        if fd >= 0 { close(fd); fd = -1 }   // an unnamed file is gone with its last descriptor
        if let temporaryPath {
            BytePath.with(temporaryPath) { _ = unlink($0) }
            CleanupOnSignal.shared.unregister(temporaryPath)
        }
    }

    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        default: return "not a regular file"
        }
    }

    static func canonical(_ path: String) -> String {
        guard let resolved = BytePath.with(path, { realpath($0, nil) }) else { return path }
        defer { free(resolved) }
        return BytePath.decode(cString: resolved)
    }
}

/// Removes registered temporary files when the process is interrupted (SIGINT, SIGTERM, SIGHUP,
/// SIGQUIT: Ctrl-C and Ctrl-\ alike), then lets the signal end the process (exit status 128 + n).
public final class CleanupOnSignal: @unchecked Sendable {
    public static let shared = CleanupOnSignal()
    static let signals = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]
    /// Registered temporary files and their bytes, encoded beforehand (the handler must not allocate).
    private var paths: [String: [CChar]] = [:]
    private let lock = NSLockLite()
    private var installed = false

    func register(_ path: String) {
        installHandlers()
        let bytes = BytePath.encode(path)
        lock.withLock { paths[path] = bytes }
    }

    /// Installs the handlers (programs call it first thing, so that Ctrl-\ never reaches the
    /// Swift runtime's backtracer, which prints and lets the program carry on).
    public func installHandlers() {
        lock.withLock {
            guard !installed else { return }
            installed = true
            for sig in Self.signals {
                signal(sig) { sig in
                    CleanupOnSignal.shared.removeAll()
                    signal(sig, SIG_DFL)
                    raise(sig)
                }
            }
        }
    }

    func unregister(_ path: String) { lock.withLock { _ = paths.removeValue(forKey: path) } }

    fileprivate func removeAll() {
        // Async-signal context: unlink is safe; we accept the lock not being taken here.
        for p in paths.values { p.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) } }
    }
}

/// A pthread mutex, so this module needs no Foundation.
final class NSLockLite: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}
