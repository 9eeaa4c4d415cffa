import CKernels

/// CRC-32 as zip uses it (IEEE 802.3, reflected polynomial 0xEDB88320), streaming. The work is
/// in CKernels (crc32.c): PCLMULQDQ folding where the CPU has it (several GB/s, so checking every byte of
/// a .pth costs little), slicing-by-8 tables otherwise.
public struct CRC32: Sendable {
    public private(set) var value: UInt32 = 0

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        value = ccrc32_update(value, base.assumingMemoryBound(to: UInt8.self), bytes.count)
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var c = CRC32()
        c.update(bytes)
        return c.value
    }

    /// Whether the PCLMULQDQ path is used on this CPU (else tables).
    public static var usesCarrylessMultiply: Bool { ccrc32_has_pclmul() == 1 }
}
