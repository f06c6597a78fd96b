using System.CommandLine;
using RouteReplay.Cli.Commands;

var root = new RootCommand("RouteReplay: an MoE inference engine whose every response carries its exact expert routing.");
root.Subcommands.Add(MakeModelCommand.Create());
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(ServeCommand.Create());
root.Subcommands.Add(RouterCommand.Create());
root.Subcommands.Add(BenchServeCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
return CommandRunner.Invoke(root, args);
