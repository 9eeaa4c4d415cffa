/// The one error type users see: which file, and what is wrong with it, on one line.
public struct RWKVError: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String?
    public let message: String

    public init(_ file: String?, _ message: String) {
        self.file = file
        self.message = message
    }

    public var description: String {
        guard let file else { return message }
        return "\(file): \(message)"
    }
}
