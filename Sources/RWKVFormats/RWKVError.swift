/// The one error type users see: which file, and what is wrong with it, on one line.
/// Strings from files reach the message through `ErrorMessage`'s interpolation, which escapes
/// control characters and shortens long names, so the line stays one line whatever the file holds.
public struct RWKVError: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String?
    public let message: String

    public init(_ file: String?, _ message: ErrorMessage) {
        self.file = file
        self.message = message.description
    }

    public var description: String {
        guard let file else { return message }
        return "\(Printable.escaped(file, limit: 1024)): \(message)"
    }
}
