#if canImport(Glibc)
import Glibc
#endif

/// File names are bytes on Linux, not necessarily UTF-8 ("caf\xe9.pth" from a Latin-1 system is
/// legal). Swift decodes such an argument with U+FFFD in place of the bad bytes, so the file can
/// no longer be opened. Here each byte that is not part of valid UTF-8 is kept as a private-use
/// scalar (U+10FF80 + byte - 0x80, from the last plane, which no file name uses) and turned back
/// into the byte when the path is handed to the system. Printing shows it as `\xNN`.
public enum BytePath {
    static let base: UInt32 = 0x10FF00

    /// The path from raw bytes (an argv entry, realpath's result).
    public static func decode(_ bytes: [UInt8]) -> String {
        if let s = String(validating: bytes, as: UTF8.self) { return s }
        var scalars = String.UnicodeScalarView()
        var i = 0
        while i < bytes.count {
            var parser = Unicode.UTF8.ForwardParser()
            var it = bytes[i...].makeIterator()
            switch parser.parseScalar(from: &it) {
            case .valid(let encoded):
                scalars.append(Unicode.UTF8.decode(encoded))
                i += encoded.count
            case .error(let length):
                for b in bytes[i..<i + length] { scalars.append(Unicode.Scalar(base + UInt32(b))!) }
                i += length
            case .emptyInput:
                i = bytes.count
            }
        }
        return String(scalars)
    }

    public static func decode(cString: UnsafePointer<CChar>) -> String {
        decode(Array(UnsafeBufferPointer(start: cString, count: strlen(cString))).map { UInt8(bitPattern: $0) })
    }

    /// The byte a scalar made by `decode` stands for, or nil.
    public static func rawByte(_ u: Unicode.Scalar) -> UInt8? {
        (base + 0x80...base + 0xff).contains(u.value) ? UInt8(u.value - base) : nil
    }

    /// The path's bytes as the system wants them, NUL-terminated.
    public static func encode(_ path: String) -> [CChar] {
        var out: [CChar] = []
        out.reserveCapacity(path.utf8.count + 1)
        for u in path.unicodeScalars {
            if let b = rawByte(u) { out.append(CChar(bitPattern: b)); continue }
            for b in UTF8.encode(u)! { out.append(CChar(bitPattern: b)) }
        }
        out.append(0)
        return out
    }

    /// Calls `body` with the path as a C string of its original bytes.
    public static func with<T>(_ path: String, _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
        try encode(path).withUnsafeBufferPointer { try body($0.baseAddress!) }
    }
}
