"""`pallet`: the entry point, global flags, and dispatch to one module per command group."""

from __future__ import annotations

import posix
import sys

from pallet.cli.flags import STR, Flag, UsageError, parse

GLOBAL = [
    Flag("-H,--host", STR, "daemon socket to connect to"),
    Flag("-D,--debug"),
    Flag("-l,--log-level", STR),
    Flag("--config", STR, "location of client config files"),
    Flag("-c,--context", STR),
    Flag("-v,--version"),
    Flag("-h,--help"),
    Flag("--tls"), Flag("--tlsverify"), Flag("--tlscacert", STR), Flag("--tlscert", STR),
    Flag("--tlskey", STR),
]

# command -> (module, function); groups ("system df") are joined with a space.
COMMANDS = {
    "version": ("system", "version"),
    "info": ("system", "info"),
    "system info": ("system", "info"),
    "system df": ("system", "df"),
    "events": ("system", "events"),
    "images": ("images", "images"),
    "image ls": ("images", "images"),
    "image list": ("images", "images"),
    "image inspect": ("images", "inspect"),
    "history": ("images", "history"),
    "image history": ("images", "history"),
    "tag": ("images", "tag"),
    "image tag": ("images", "tag"),
    "rmi": ("images", "rmi"),
    "image rm": ("images", "rmi"),
    "image prune": ("images", "prune"),
    "image bootstrap": ("images", "bootstrap"),
    "import": ("images", "import_"),
    "image import": ("images", "import_"),
    "system events": ("system", "events"),
    "save": ("transfer", "save"), "image save": ("transfer", "save"),
    "load": ("transfer", "load"), "image load": ("transfer", "load"),
    "pull": ("distribution", "pull"), "image pull": ("distribution", "pull"),
    "push": ("distribution", "push"), "image push": ("distribution", "push"),
    "login": ("distribution", "login"), "logout": ("distribution", "logout"),
    "build": ("build", "build"), "image build": ("build", "build"),
}
for _verb, _func in (("run", "run"), ("create", "create"), ("start", "start"),
                     ("stop", "stop"), ("restart", "restart"), ("kill", "kill"),
                     ("pause", "pause"), ("unpause", "unpause"), ("rm", "rm"),
                     ("rename", "rename"), ("wait", "wait"), ("logs", "logs"),
                     ("exec", "exec_"), ("ps", "ps"), ("inspect", "inspect")):
    COMMANDS[_verb] = ("containers", _func)
    COMMANDS[f"container {_verb}"] = ("containers", _func)
COMMANDS["container ls"] = COMMANDS["container list"] = ("containers", "ps")
for _verb in ("create", "ls", "inspect", "rm", "prune", "connect", "disconnect"):
    COMMANDS[f"network {_verb}"] = ("networks", _verb)
COMMANDS["network list"] = ("networks", "ls")
COMMANDS["network remove"] = ("networks", "rm")
COMMANDS["port"] = COMMANDS["container port"] = ("networks", "port")
COMMANDS["container prune"] = ("containers", "prune")
COMMANDS["container inspect"] = ("containers", "inspect")
for _verb in ("create", "ls", "inspect", "rm", "prune", "export"):
    COMMANDS[f"volume {_verb}"] = ("volumes", _verb)
COMMANDS["volume list"] = ("volumes", "ls")
COMMANDS["volume remove"] = ("volumes", "rm")
COMMANDS["volume import"] = ("volumes", "import_")
COMMANDS["volume"] = ("volumes", "usage")

USAGE = """Usage:  pallet [OPTIONS] COMMAND

A container engine: docker's verbs and flags, served by palletd.

Common Commands:
  run         Create and run a new container from an image
  exec        Execute a command in a running container
  ps          List containers
  images      List images
  pull        Download an image from a registry
  push        Upload an image to a registry
  logs        Fetch the logs of a container
  inspect     Return low-level information on pallet objects

Commands:
  build       Build an image from a Dockerfile
  create      Create a new container
  events      Get real time events from the server
  history     Show the history of an image
  images      List images
  import      Import the contents from a tarball to create a filesystem image
  info        Display system-wide information
  kill        Kill one or more running containers
  network     Manage networks (create, ls, inspect, rm, prune, connect, disconnect)
  pause       Pause all processes within one or more containers
  port        List port mappings or a specific mapping for the container
  rename      Rename a container
  restart     Restart one or more containers
  rm          Remove one or more containers
  rmi         Remove one or more images
  start       Start one or more stopped containers
  stop        Stop one or more running containers
  system df   Show pallet disk usage
  tag         Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
  unpause     Unpause all processes within one or more containers
  version     Show the pallet version information
  volume      Manage volumes (create, ls, inspect, rm, prune, export, import)
  wait        Block until one or more containers stop, then print their exit codes

Global Options:
  -H, --host string   Daemon socket to connect to (default unix:///run/pallet/pallet.sock)
  -D, --debug         Enable debug mode
  -v, --version       Print version information and quit
"""



def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        g = parse(argv, GLOBAL, interspersed=False)
        if g.version and not g.args:
            import pallet

            sys.stdout.write(f"pallet version {pallet.__version__}\n")
            return 0
        if not g.args or g.help:
            sys.stdout.write(USAGE)
            return 0
        words = g.args
        key = " ".join(words[:2]) if " ".join(words[:2]) in COMMANDS else words[0]
        if key not in COMMANDS:
            raise UsageError(f"'{words[0]}' is not a pallet command.\n"
                             "See 'pallet --help'")
        rest = words[len(key.split()):]
        module, func = COMMANDS[key]
        host = g.host if isinstance(g.host, str) else None
        return int(_command(module, func)(host, rest))
    except UsageError as exc:
        sys.stderr.write(f"pallet: {exc}\n")
        return 125
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the client's errors, translated to docker's output
        return _report(exc)


def _command(module: str, func: str):  # type: ignore[no-untyped-def]
    # __import__, not importlib: importlib's package imports warnings (~0.8 ms a verb)
    name = f"pallet.cli.{module}"
    __import__(name)
    return getattr(sys.modules[name], func)


def _report(exc: Exception) -> int:
    from pallet.client.transport import APIError, ConnectionFailed

    if isinstance(exc, APIError):
        sys.stderr.write(f"Error response from daemon: {exc.message}\n")
        return 1
    if isinstance(exc, ConnectionFailed):
        sys.stderr.write(f"{exc}\n")
        return 1
    raise exc


def run() -> None:
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    posix._exit(code)


if __name__ == "__main__":
    run()
