/// Memory kept from one tensor read to the next. A fresh array per large tensor costs a page
/// fault and a zeroed page per 4 KiB, as much time as reading the bytes; a reused buffer pays
/// that once. It grows to the largest size asked for and keeps it until released.
public final class ReusableBuffer {
    private var memory = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    public init() {}
    deinit { memory.deallocate() }

    /// The first `count` bytes of the buffer, growing it if needed; the contents are undefined
    /// and the memory is valid until the next call.
    public func bytes(_ count: Int) -> UnsafeMutableRawBufferPointer {
        if memory.count < count {
            memory.deallocate()
            memory = .allocate(byteCount: count, alignment: 64)
        }
        return UnsafeMutableRawBufferPointer(rebasing: memory[0..<count])
    }

    /// Frees the memory (the next `bytes` allocates again).
    public func release() {
        memory.deallocate()
        memory = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }
}
