import ArgumentParser

@main
struct Cairn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "A replicated file store in the line of MogileFS, mounted as a directory.",
        version: "0.1.0",
        subcommands: [
            Up.self, TrackerCommand.self, StorageCommand.self,
            Put.self, Get.self, Ls.self, Rm.self, Mv.self, Stat.self, Meta.self,
            MountCommand.self, Admin.self,
        ]
    )

    static func main() async {
        ServerRuntime.prepare(arguments: CommandLine.arguments)
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand { try await async.run() } else { try command.run() }
        } catch {
            exit(withError: error)
        }
    }
}
