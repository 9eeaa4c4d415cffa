import ArgumentParser

struct Command: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rwkv-upgrade", abstract: "Work in progress.")
    func run() throws { throw ValidationError("rwkv-upgrade is not implemented yet") }
}

Command.main()
