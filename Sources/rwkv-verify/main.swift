import ArgumentParser

struct Command: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rwkv-verify", abstract: "Work in progress.")
    func run() throws { throw ValidationError("rwkv-verify is not implemented yet") }
}

Command.main()
