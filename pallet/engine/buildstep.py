"""One build step: a Dockerfile instruction applied to a stage's state, as an image.

The state is what the classic builder calls the run config: the container config the
image will carry (Env, Cmd, Labels, …), plus what only the build sees (the ARGs in
scope, the SHELL). Each step makes the next image or finds it in the cache:

    cache key = sha256(parent image, created_by, config, and what COPY/ADD copies)

``created_by`` is the history line Docker writes (``/bin/sh -c #(nop)  ENV a=b``,
``|1 A=x /bin/sh -c make``, ``/bin/sh -c #(nop) COPY file:<sha> in /dst ``), so
``docker history`` reads as it does for images docker built.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import posixpath
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pallet.build import dockerfile as df
from pallet.engine import buildcontext, buildcopy
from pallet.engine.containerconf import resolve_user
from pallet.errors import InvalidArgument, NotFound, PalletError
from pallet.image import reference
from pallet.storage.diff import diff_upper

if TYPE_CHECKING:
    from pallet.engine.builds import Builder
    from pallet.engine.distribution import Emit

_HEREDOC_MARK = re.compile(r"<<-?(['\"]?)[A-Za-z0-9_.-]+\1")
# Build args every build knows without an ARG line (Docker's predefined ones).
PREDEFINED_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                   "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ["/bin/sh", "-c"]
NOP = "/bin/sh -c #(nop) "


class BuildError(PalletError):
    """A step failed (its command exited non-zero); ``code`` is its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message, op="build")
        self.code = code


@dataclass
class StageState:
    stage: df.Stage
    image: str = ""                      # "" while the stage stands on scratch
    config: dict[str, Any] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)  # ARGs in scope, with values
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    cmd_set: bool = False
    author: str = ""
    base: str = ""                       # the image FROM named (what --squash keeps)


def _env_map(cfg: dict[str, Any]) -> dict[str, str]:
    out = {}
    for e in cfg.get("Env") or []:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def _set_env(cfg: dict[str, Any], key: str, value: str) -> None:
    env = [e for e in cfg.get("Env") or [] if e.partition("=")[0] != key]
    cfg["Env"] = [*env, f"{key}={value}"]


def _cache_key(*parts: object) -> str:
    raw = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


class Step:
    def __init__(self, b: Builder, state: StageState, write: Emit) -> None:
        self.b = b
        self.state = state
        self.write = write
        self.images = b.images
        self.containers = b.containers

    def say(self, text: str) -> None:
        self.write({"stream": text})

    # --- FROM ---------------------------------------------------------------------------

    async def from_(self, cmd: df.From, n: int, total: int) -> None:
        self.say(f"Step {n}/{total} : {cmd.original}\n")
        try:
            await self._from(cmd)
        except PalletError as exc:
            _name_the_line(exc, cmd)
            raise

    async def _from(self, cmd: df.From) -> None:
        base = df.expand_word(cmd.base, self.b.meta, self.b.file.escape)
        st = self.state
        dep = self.b.stage_by_ref(base, st.stage.index)
        if base == "scratch":
            st.image, st.config = "", {}
        elif dep is not None:
            other = await self.b.stage_result(dep.index)
            st.image, st.config = other.image, copy.deepcopy(other.config)
        else:
            st.image = await self.base_image(base, cmd.platform or self.b.opts.platform)
            cfg = await asyncio.to_thread(self.images.config, st.image)
            st.config = copy.deepcopy(cfg.get("config") or {})
        st.base = st.image
        if "PATH" not in _env_map(st.config):
            _set_env(st.config, "PATH", DEFAULT_PATH)
        self.say(f" ---> {st.image[7:19]}\n" if st.image else " ---> \n")
        triggers = list(st.config.get("OnBuild") or [])
        st.config["OnBuild"] = None
        if triggers:
            self.say(f"# Executing {len(triggers)} build trigger"
                     f"{'s' if len(triggers) > 1 else ''}\n")
            for text in triggers:
                await self.dispatch(df.parse_instruction(text, self.b.file.escape,
                                                         cmd.line), 0, 0)

    async def base_image(self, name: str, platform: str) -> str:
        """The image ``name`` names here; pulled when absent (or always with --pull)."""
        from pallet.engine import pull
        from pallet.image.manifest import platform_from_string

        try:
            ref = reference.parse(name)
        except InvalidArgument as exc:
            raise InvalidArgument(f"invalid reference format for FROM {name}: {exc}") from None
        if not self.b.opts.pull:
            try:
                return await asyncio.to_thread(self.images.resolve, name)
            except NotFound:
                pass
        if ref.tag is None and ref.digest is None:
            ref = ref.with_tag("latest")
        plat = platform_from_string(platform) if platform else None
        try:
            return await pull.pull(self.images, ref, plat, self.b.opts.auth.get(ref.domain),
                                   self.write)
        except PalletError as exc:  # with --pull too, as dockerd: no stale base instead
            raise NotFound(f"failed to get base image {name}: {exc}", obj=name) from exc

    # --- every other instruction -----------------------------------------------------------

    async def dispatch(self, cmd: df.Command, n: int, total: int) -> None:
        if n:
            self.say(f"Step {n}/{total} : {cmd.original}\n")
        st = self.state
        env = {**st.args, **_env_map(st.config)}
        cmd = df.expand(cmd, env, self.b.file.escape)
        try:
            await self._dispatch(cmd)
        except PalletError as exc:
            _name_the_line(exc, cmd)
            raise

    async def _dispatch(self, cmd: df.Command) -> None:
        st, cfg = self.state, self.state.config
        if isinstance(cmd, df.Run):
            return await self.run(cmd)
        if isinstance(cmd, (df.Copy, df.Add)):
            return await self.copy(cmd)
        if isinstance(cmd, df.Workdir):
            return await self.workdir(cmd)
        if isinstance(cmd, df.Arg):
            for name, default in cmd.pairs:
                if name in self.b.opts.build_args and self.b.opts.build_args[name] is not None:
                    self.b.used_args.add(name)
                    st.args[name] = str(self.b.opts.build_args[name])
                elif default is not None:
                    st.args[name] = default
                elif name in self.b.meta:
                    st.args[name] = self.b.meta[name]
            text = " ".join(k if v is None else f"{k}={v}" for k, v in cmd.pairs)
            return await self.meta(f"ARG {text}")
        if isinstance(cmd, df.Env):
            for k, v in cmd.pairs:
                _set_env(cfg, k, v)
            return await self.meta("ENV " + " ".join(f"{k}={v}" for k, v in cmd.pairs))
        if isinstance(cmd, df.Label):
            cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(cmd.pairs)}
            return await self.meta("LABEL " + " ".join(f"{k}={v}" for k, v in cmd.pairs))
        if isinstance(cmd, df.Expose):
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in cmd.ports:
                ports[p if "/" in p else f"{p}/tcp"] = {}
            cfg["ExposedPorts"] = ports
            return await self.meta("EXPOSE " + " ".join(cmd.ports))
        if isinstance(cmd, df.User):
            cfg["User"] = cmd.user
            return await self.meta(f"USER {cmd.user}")
        if isinstance(cmd, df.Volume):
            cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{p: {} for p in cmd.paths}}
            return await self.meta("VOLUME " + _go_list(cmd.paths))
        if isinstance(cmd, df.StopSignal):
            cfg["StopSignal"] = cmd.signal
            return await self.meta(f"STOPSIGNAL {cmd.signal}")
        if isinstance(cmd, df.Healthcheck):
            cfg["Healthcheck"] = cmd.config()
            return await self.meta(f"HEALTHCHECK {json.dumps(cfg['Healthcheck'])}")
        if isinstance(cmd, df.Shell):
            st.shell = list(cmd.argv)
            cfg["Shell"] = list(cmd.argv)
            return await self.meta("SHELL " + _go_list(cmd.argv))
        if isinstance(cmd, df.OnBuild):
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), cmd.expression]
            return await self.meta(f"ONBUILD {cmd.expression}")
        if isinstance(cmd, df.Maintainer):
            st.author = cmd.name
            return await self.meta(f"MAINTAINER {cmd.name}")
        if isinstance(cmd, df.Cmd):
            cfg["Cmd"] = self._argv(cmd.cmd, cmd.shell_form)
            st.cmd_set = True
            return await self.meta("CMD " + _go_list(cfg["Cmd"]))
        if isinstance(cmd, df.Entrypoint):
            cfg["Entrypoint"] = self._argv(cmd.cmd, cmd.shell_form)
            if not st.cmd_set:
                cfg["Cmd"] = None
            return await self.meta("ENTRYPOINT " + _go_list(cfg["Entrypoint"]))
        raise InvalidArgument(f"{cmd.original.split()[0]} is not supported here")

    def _argv(self, cmd: tuple[str, ...], shell_form: bool) -> list[str]:
        return [*self.state.shell, cmd[0]] if shell_form else list(cmd)

    # --- committing ------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        cfg = {k: v for k, v in self.state.config.items() if v not in (None, [], {})}
        return copy.deepcopy(cfg)

    def _cached(self, key: str, created_by: str) -> str | None:
        if self.b.opts.no_cache:
            return None
        return self.images.cached_step(self.state.image, key) or \
            self._from_sources(key, created_by)

    def _from_sources(self, key: str, created_by: str) -> str | None:
        """--cache-from: an image (pulled, loaded) whose history goes as this build has
        so far and then does this step gives the step's result: its layer, reused. The
        classic builder's rule; the image need not have been built here."""
        if not self.b.cache_from:
            return None
        parent = self.images.config(self.state.image) if self.state.image else {}
        mine = [(h.get("created_by", ""), bool(h.get("empty_layer")))
                for h in parent.get("history") or []]
        diffs = list((parent.get("rootfs") or {}).get("diff_ids") or [])
        n = len(mine)
        for source in self.b.cache_from:
            cfg = self.images.config(source)
            hist = cfg.get("history") or []
            theirs = [(h.get("created_by", ""), bool(h.get("empty_layer"))) for h in hist]
            sdiffs = list((cfg.get("rootfs") or {}).get("diff_ids") or [])
            if len(theirs) <= n or theirs[:n] != mine or theirs[n][0] != created_by \
                    or sdiffs[:len(diffs)] != diffs:
                continue
            layer = None
            if not theirs[n][1]:
                if len(sdiffs) <= len(diffs):
                    continue
                layer = self.images.db.layers(source)[len(diffs)]
            last = n + 1 == len(theirs)
            config = cfg.get("config") or {} if last else self._config()
            return self.images.add_step(
                self.state.image, layer, config, {"created_by": created_by},
                hist[n].get("created", self.b.created()), key, self.state.author)
        return None

    def _use(self, image_id: str, cached: bool) -> None:
        if cached:
            self.say(" ---> Using cache\n")
        self.state.image = image_id
        self.say(f" ---> {image_id[7:19]}\n")

    async def meta(self, text: str, created_by: str = "") -> None:
        """A step that changes the config only."""
        created_by = created_by or f"{NOP} {text}"
        cfg = self._config()
        key = _cache_key(self.state.image, created_by, cfg, self.state.author)
        hit = self._cached(key, created_by)
        if hit:
            return self._use(hit, True)
        history = {"created_by": created_by}
        if self.state.author:
            history["author"] = self.state.author
        image_id = await asyncio.to_thread(
            self.images.add_step, self.state.image, None, cfg, history, self.b.created(),
            key, self.state.author)
        self._use(image_id, False)

    async def _layer_step(self, created_by: str, key: str, fill: Any) -> None:
        """A step whose layer is written here: ``fill(rootfs)`` writes into the step's
        snapshot mounted at ``rootfs``; the snapshot's changes become the layer."""
        hit = self._cached(key, created_by)
        if hit:
            return self._use(hit, True)
        image_id = await asyncio.to_thread(self._commit_snapshot, created_by, key, fill)
        self._use(image_id, False)

    def _commit_snapshot(self, created_by: str, key: str, fill: Any) -> str:
        snaps = self.containers.snapshots
        lowers = self.containers._lowers(self.state.image) if self.state.image else []
        name = "build-" + secrets.token_hex(16)
        m = snaps.prepare(name, lowers)
        try:
            snaps.mount(name, lowers)
            try:
                fill(m.merged)
            finally:
                snaps.unmount(m.merged)
            layer = diff_upper(m.upper, lowers, mtime=self.b.epoch)
            return self.images.add_step(self.state.image, layer, self._config(),
                                        {"created_by": created_by}, self.b.created(), key,
                                        self.state.author)
        finally:
            snaps.remove(name)

    # --- WORKDIR ---------------------------------------------------------------------------

    async def workdir(self, cmd: df.Workdir) -> None:
        cfg = self.state.config
        path = posixpath.normpath(posixpath.join(cfg.get("WorkingDir") or "/", cmd.path))
        cfg["WorkingDir"] = path
        from pallet.engine.volumes import image_may_hold

        lowers = self.containers._lowers(self.state.image) if self.state.image else []
        created_by = f"{NOP}WORKDIR {path}"
        if image_may_hold(lowers, path):
            return await self.meta("", created_by)
        key = _cache_key(self.state.image, created_by, self._config())

        def fill(root: str) -> None:
            os.makedirs(buildcontext.inside(root, path), 0o755, exist_ok=True)

        await self._layer_step(created_by, key, fill)

    # --- COPY / ADD ------------------------------------------------------------------------

    async def copy(self, cmd: df.Copy | df.Add) -> None:
        verb = "ADD" if isinstance(cmd, df.Add) else "COPY"
        tmp = self.b.stage_tmp()
        try:
            root, what, mounted = await self._source_root(cmd.from_, tmp)
            try:
                await self._copy_from(cmd, verb, root, what, tmp)
            finally:
                if mounted:
                    await asyncio.to_thread(self.containers.snapshots.unmount, root)
        finally:
            self.b.remove_tmp(tmp)

    async def _source_root(self, from_: str | None, tmp: str) -> tuple[str, str, bool]:
        if not from_:
            return self.b.ctx, "build context", False
        dep = self.b.stage_by_ref(from_, self.state.stage.index)
        if dep is not None:
            image = (await self.b.stage_result(dep.index)).image
        else:
            image = await self.base_image(from_, self.b.opts.platform)
        lowers = self.containers._lowers(image) if image else []
        root = os.path.join(tmp, "from")
        os.mkdir(root, 0o700)
        if not lowers:
            return root, f"stage {from_}", False
        await asyncio.to_thread(self.containers.snapshots.mount_readonly, lowers, root)
        return root, f"stage {from_}", True

    async def _copy_from(self, cmd: df.Copy | df.Add, verb: str, root: str, what: str,
                         tmp: str) -> None:
        if cmd.chmod and not _octal(cmd.chmod):
            raise InvalidArgument(f"invalid chmod parameter: {cmd.chmod}")
        sources: list[str] = []
        fetched: list[str] = []  # ADD unpacks local archives, never what it fetched
        if cmd.heredocs:
            hd = os.path.join(tmp, "heredoc")
            os.mkdir(hd, 0o755)
            env = {**self.state.args, **_env_map(self.state.config)}
            for doc in cmd.heredocs:
                path = os.path.join(hd, doc.name)
                content = df.expand_heredoc(doc.content, env, self.b.file.escape) \
                    if doc.expand else doc.content
                with open(path, "w", encoding="utf-8") as f:
                    f.write(content)
                os.chmod(path, 0o644)
                sources.append(path)
        urls = [s for s in cmd.sources if s.startswith(("http://", "https://"))]
        if urls and verb == "COPY":
            raise InvalidArgument("source can't be a URL for COPY")
        local = [s for s in cmd.sources if s not in urls]
        if urls:
            into = os.path.join(tmp, "fetched")
            os.mkdir(into, 0o755)
            for u in urls:
                fetched.append(await asyncio.to_thread(buildcopy.fetch, u, into))
            sources += fetched
        if local:
            sources += await asyncio.to_thread(buildcopy.resolve_sources, root, local, what)
        if not sources:
            raise InvalidArgument(f"{verb} needs a source")
        digest = await asyncio.to_thread(buildcontext.checksum, root if local else tmp,
                                         sources)
        kind = ("multi" if len(sources) > 1 else
                "dir" if os.path.isdir(sources[0]) else "file")
        dest = cmd.dest
        if not dest.startswith("/"):
            wd = self.state.config.get("WorkingDir") or "/"
            dest = posixpath.join(wd, dest) + ("/" if dest.endswith("/") else "")
        created_by = f"{NOP}{verb} {kind}:{digest} in {cmd.dest} "
        key = _cache_key(self.state.image, created_by, self._config(), cmd.chown, cmd.chmod)
        mode = int(cmd.chmod, 8) if cmd.chmod else None

        def fill(rootfs: str) -> None:
            uid, gid = _chown(rootfs, cmd.chown) if cmd.chown else (0, 0)
            target = buildcopy.Target(rootfs, dest, uid, gid, mode)
            buildcopy.copy(sources, target, extract=verb == "ADD", keep=set(fetched))

        await self._layer_step(created_by, key, fill)

    # --- RUN -------------------------------------------------------------------------------

    async def run(self, cmd: df.Run) -> None:
        st = self.state
        if cmd.shell_form:
            text = cmd.cmd[0]
            if cmd.heredocs:
                if len(cmd.heredocs) == 1 and not _HEREDOC_MARK.sub("", text).strip():
                    text = cmd.heredocs[0].content  # RUN <<EOF: the body is the script
                else:
                    text = cmd.shell_script()
            argv = [*st.shell, text]
        else:
            argv = list(cmd.cmd)
        env = _env_map(st.config)
        args = {k: v for k, v in st.args.items() if k not in env}
        prefix = f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in sorted(args.items())) \
            + " " if args else ""
        created_by = prefix + " ".join(argv)
        # The proxy args need no ARG line, and stay out of the history (they may hold
        # credentials) and the cache key, as Docker keeps them.
        for name in PREDEFINED_ARGS:
            value = self.b.opts.build_args.get(name)
            if value is not None and name not in st.args and name not in env:
                args[name] = value
                self.b.used_args.add(name)
        key = _cache_key(st.image, created_by, self._config(), cmd.flags)
        hit = self._cached(key, created_by)
        if hit:
            return self._use(hit, True)
        if not st.image:
            raise InvalidArgument(f"RUN on an empty image (FROM scratch): {argv[0]}: "
                                  "no such file or directory")
        image_id = await self._run_container(argv, args, created_by, key)
        self._use(image_id, False)

    async def _run_container(self, argv: list[str], args: dict[str, str], created_by: str,
                             key: str) -> str:
        from pallet.engine.monitorclient import frames

        st, opts = self.state, self.b.opts
        env = [*(st.config.get("Env") or []), *(f"{k}={v}" for k, v in args.items())]
        hc: dict[str, Any] = {
            "NetworkMode": opts.network or "default",
            "LogConfig": {"Type": "none", "Config": {}},
            **opts.host_config,
        }
        if opts.extra_hosts:
            hc["ExtraHosts"] = list(opts.extra_hosts)
        body = {"Image": st.image, "Cmd": argv, "Entrypoint": [], "Env": env,
                "User": st.config.get("User") or "",
                "WorkingDir": st.config.get("WorkingDir") or "",
                "AttachStdout": True, "AttachStderr": True, "HostConfig": hc}
        svc = self.containers
        created = await asyncio.to_thread(svc.create, body)
        cid = created["Id"]
        self.say(f" ---> Running in {cid[:12]}\n")
        ok = removed = False
        try:
            reader, writer, _ = await svc.monitor.open_stream(
                "attach", id=cid, stdin=False, stdout=True, stderr=True, wait_start=True)
            try:
                await asyncio.to_thread(svc.start, cid)
                async for stream, _, data in frames(reader):
                    text = data.decode("utf-8", errors="replace")
                    # stderr in red, as dockerd's classic builder shows it
                    self.say(f"\x1b[91m{text}\x1b[0m" if stream == 2 else text)
            finally:
                writer.close()
            status = await svc.wait(cid)
            code = int(status["StatusCode"])
            if code != 0:
                    raise BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: "
                                 f"{code}", code)
            image_id = await asyncio.to_thread(self._commit_container, cid, created_by, key)
            ok = True
            return image_id
        except asyncio.CancelledError:
            # Another stage failed (or the client went away): this step did not fail, and
            # its container is no failed step's to look into. It goes, running or not.
            removed = True
            await asyncio.shield(svc.remove(cid, force=True, volumes=True))
            raise
        finally:
            if not removed and (opts.force_rm or (ok and opts.rm)):
                await svc.remove(cid, force=True, volumes=True)
                self.say(f" ---> Removed intermediate container {cid[:12]}\n")

    def _commit_container(self, cid: str, created_by: str, key: str) -> str:
        svc = self.containers
        upper = os.path.join(svc.snapshots.path(cid), "upper")
        lowers = svc._lowers(self.state.image)
        layer = diff_upper(upper, lowers, mtime=self.b.epoch)
        return self.images.add_step(self.state.image, layer, self._config(),
                                    {"created_by": created_by}, self.b.created(), key,
                                    self.state.author)


def _name_the_line(exc: PalletError, cmd: df.Command) -> None:
    """An instruction's failure says which line it was (``COPY failed (Dockerfile line
    3): …``), unless it does already or is a RUN's own exit (Docker's own wording)."""
    if isinstance(exc, BuildError) or not cmd.line or "line " in str(exc):
        return
    exc.message = f"{cmd.original.split()[0].upper()} failed (Dockerfile line " \
                  f"{cmd.line}): {exc}"
    exc.args = (exc.message,)


def _go_list(items: Any) -> str:
    """A list as Go's %q of a []string prints it: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(str(x)) for x in items or []) + "]"


def _octal(text: str) -> bool:
    return bool(text) and all(c in "01234567" for c in text) and len(text) <= 4


def _chown(rootfs: str, spec: str) -> tuple[int, int]:
    """``--chown=user[:group]`` in the image: names from its passwd/group files, and a
    number alone means the group of the same number (Docker's rule)."""
    user, sep, group = spec.partition(":")
    uid, gid, _ = resolve_user(rootfs, user if not user.isdigit() else "", [])
    if user.isdigit():
        uid = gid = int(user)
    if sep:
        gid = int(group) if group.isdigit() else resolve_user(rootfs, f"0:{group}", [])[1]
    return uid, gid
