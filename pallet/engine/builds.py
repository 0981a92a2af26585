"""Builds: a Dockerfile and its context into an image, as Docker's classic builder does.

Each instruction is a step that makes an image on top of the previous step's: RUN in a
real container (the same runtime, monitor, network and mounts as ``pallet run``) whose
upper dir becomes the layer; COPY/ADD in a step snapshot mounted here; the rest change
the config only (an ``empty_layer`` history entry). A step is reused when an earlier
build made one on the same parent with the same cache key — the instruction, the config
it runs with and, for COPY/ADD, the checksum of what it copies (buildstep.py).

Beyond the classic builder: only the stages the target needs are built, and stages that
do not depend on each other build at the same time; their output is still shown one
stage after the other (Output). ``SOURCE_DATE_EPOCH`` makes the image reproducible:
every timestamp is that time, so the same context builds to the same image id.

    POST /build --> api/build.py --> BuildService.build --> Builder.run
                                                              |- stage task per stage
                                                              '- buildstep.Step per line
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pallet.build import dockerfile as df
from pallet.engine import buildcontext
from pallet.engine.buildstep import PREDEFINED_ARGS, BuildError, StageState, Step
from pallet.engine.containers import ContainerService
from pallet.engine.distribution import Emit
from pallet.engine.images import ImageService
from pallet.errors import InvalidArgument, NotFound, NotSupported
from pallet.image import reference
from pallet.image.registry import Credentials
from pallet.image.timefmt import now_rfc3339


@dataclass
class Options:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    no_cache: bool = False
    pull: bool = False
    rm: bool = True
    force_rm: bool = False
    quiet: bool = False
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    network: str = ""
    cache_from: list[str] = field(default_factory=list)
    squash: bool = False
    extra_hosts: list[str] = field(default_factory=list)
    host_config: dict[str, Any] = field(default_factory=dict)  # memory, cpu… for RUN
    platform: str = ""
    source_date_epoch: int | None = None
    auth: dict[str, Credentials] = field(default_factory=dict)  # registry host -> login


class BuildService:
    def __init__(self, images: ImageService, containers: ContainerService) -> None:
        self.images = images
        self.containers = containers
        self.sweep()

    def sweep(self) -> None:
        """What builds cut short by a crash left: step snapshots, unpacked contexts and
        the read-only mounts of COPY --from sources in them. Only at start, when no build
        runs."""
        from pallet.storage import tree

        snaps = self.containers.snapshots
        made = snaps.keys()  # a list of snapshot names (not a dict's keys)
        for key in made:
            if key.startswith("build-"):
                snaps.remove(key)
        for name in os.listdir(self.images.tmp):
            if name.startswith(("build-", "context-")):
                path = os.path.join(self.images.tmp, name)
                if not os.path.isdir(path) or os.path.islink(path):
                    os.unlink(path)  # a context body, as it came
                    continue
                for point in tree.mounts_using(path)[0]:  # deepest first
                    snaps.unmount(point)
                shutil.rmtree(path, ignore_errors=True)

    def cache_records(self) -> list[dict[str, Any]]:
        """The build cache as `system df` shows it: the steps earlier builds made."""
        images, out = self.images, []
        for image_id in images.db.steps():
            row = images.db.image(image_id)
            if row is None:
                continue
            cfg = images.config(image_id)
            history = cfg.get("history") or [{}]
            own = 0 if history[-1].get("empty_layer") else row.size - (
                row_size(images, images.db.parent_of(image_id)))
            out.append({
                "ID": image_id[7:19], "Parent": images.db.parent_of(image_id)[7:19],
                "Type": "regular", "Description": history[-1].get("created_by", ""),
                "InUse": bool(images.db.tags_of(image_id) or images.db.children_of(image_id)
                              or images.in_use(image_id)),
                "Shared": False, "Size": max(own, 0), "CreatedAt": row.created,
                "LastUsedAt": None, "UsageCount": 0})
        return out

    def prune_cache(self, all_: bool = False) -> dict[str, Any]:
        """``POST /build/prune``: the steps no image, container or name needs go (and the
        steps under them nothing else needs); with ``all_`` the steps still needed stop
        being a cache too. A classic builder's cache is its step images."""
        images = self.images
        before_size = images.layers_size()
        before = set(images.db.steps())
        forgotten = []
        for image_id in images.db.steps():
            if images.db.image(image_id) is None:
                continue
            if (images.db.tags_of(image_id) or images.db.digests_of(image_id)
                    or images.db.children_of(image_id) or images.in_use(image_id)):
                if all_:
                    images.db.forget_cache_key(image_id)
                    forgotten.append(image_id)
                continue
            images.delete(image_id)
        gone = sorted(before - set(images.db.steps()))
        return {"CachesDeleted": gone or None,
                "SpaceReclaimed": before_size - images.layers_size()}

    async def build(self, body: BinaryIO, opts: Options, emit: Emit) -> str:
        """Build from the context tar ``body``; the image id. Messages go to ``emit``."""
        for t in opts.tags:
            reference.parse(t)  # a bad tag fails before anything is built
        with tempfile.TemporaryDirectory(dir=self.images.tmp, prefix="build-") as work:
            ctx = os.path.join(work, "context")
            os.mkdir(ctx, 0o755)
            await asyncio.to_thread(buildcontext.unpack, body, ctx)
            text = await asyncio.to_thread(_read_dockerfile, ctx, opts.dockerfile)
            await asyncio.to_thread(buildcontext.drop_ignored, ctx, opts.dockerfile)
            parsed = df.parse(text)
            builder = Builder(self, parsed, ctx, work, opts, emit)
            image_id = await builder.run()
        for t in opts.tags:
            ref = reference.parse(t)
            await asyncio.to_thread(self.images.tag, image_id, ref.name, ref.tag_or_latest())
        if opts.quiet:
            emit({"stream": image_id + "\n"})
        else:
            emit({"aux": {"ID": image_id}})
            emit({"stream": f"Successfully built {image_id[7:19]}\n"})
            for t in opts.tags:
                emit({"stream": f"Successfully tagged {reference.parse(t).familiar()}\n"})
        return image_id


def row_size(images: ImageService, image_id: str) -> int:
    row = images.db.image(image_id) if image_id else None
    return row.size if row is not None else 0


def _read_dockerfile(ctx: str, name: str) -> str:
    path = buildcontext.inside(ctx, name)
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InvalidArgument(f"Cannot locate specified Dockerfile: {name}") from None


class Output:
    """Messages of stages built at the same time, shown one stage after the other: the
    first unfinished stage's go out as they come, later ones wait their turn."""

    def __init__(self, emit: Emit, quiet: bool, count: int) -> None:
        self._emit = emit
        self._quiet = quiet
        self._held: list[list[dict[str, Any]]] = [[] for _ in range(count)]
        self._done = [False] * count
        self._turn = 0

    def writer(self, pos: int) -> Emit:
        def write(msg: dict[str, Any]) -> None:
            if self._quiet:
                return
            if pos == self._turn:
                self._emit(msg)
            else:
                self._held[pos].append(msg)
        return write

    def finish(self, pos: int) -> None:
        self._done[pos] = True
        while self._turn < len(self._done) and self._done[self._turn]:
            self._turn += 1
            if self._turn < len(self._done):
                for msg in self._held[self._turn]:
                    self._emit(msg)
                self._held[self._turn].clear()

    def flush(self, pos: int) -> None:
        """A failed stage's output, out now whatever its turn."""
        for msg in self._held[pos]:
            self._emit(msg)
        self._held[pos].clear()


class Builder:
    def __init__(self, svc: BuildService, parsed: df.Dockerfile, ctx: str, work: str,
                 opts: Options, emit: Emit) -> None:
        self.svc = svc
        self.images = svc.images
        self.containers = svc.containers
        self.file = parsed
        self.ctx = ctx
        self.work = work
        self.opts = opts
        self.emit = emit
        epoch = opts.source_date_epoch
        if epoch is None and "SOURCE_DATE_EPOCH" in opts.build_args:
            value = opts.build_args["SOURCE_DATE_EPOCH"] or ""
            if not value.isdigit():
                raise InvalidArgument(f"invalid SOURCE_DATE_EPOCH: {value!r}")
            epoch = int(value)
        self.epoch = epoch
        self.meta = self._meta_args()
        self.used_args: set[str] = set()
        self.cache_from = self._cache_sources()
        self.results: dict[int, asyncio.Future[StageState]] = {}

    def _cache_sources(self) -> list[str]:
        """The --cache-from images that are here (dockerd skips the others too)."""
        out = []
        for name in self.opts.cache_from:
            try:
                out.append(self.images.resolve(name))
            except (NotFound, InvalidArgument):
                continue
        return out

    def created(self) -> str:
        return now_rfc3339(self.epoch) if self.epoch is not None else now_rfc3339()

    def _meta_args(self) -> dict[str, str]:
        """ARGs before the first FROM: defaults, overridden by --build-arg."""
        out: dict[str, str] = {}
        for line in self.file.meta_args:
            arg = df.expand(line, out, self.file.escape)
            assert isinstance(arg, df.Arg)
            for name, default in arg.pairs:
                given = self.opts.build_args.get(name)
                if name in self.opts.build_args and given is not None:
                    out[name] = given
                elif default is not None:
                    out[name] = default
        return out

    # --- which stages, in which order -----------------------------------------------------

    def stage_by_ref(self, ref: str, before: int) -> df.Stage | None:
        """The stage ``ref`` names (name or index) among those before ``before``."""
        for st in self.file.stages[:before]:
            if st.name == ref.lower() or (ref.isdigit() and int(ref) == st.index):
                return st
        return None

    def _deps(self, st: df.Stage) -> list[int]:
        out = []
        base = df.expand_word(st.from_.base, self.meta, self.file.escape)
        dep = self.stage_by_ref(base, st.index)
        if dep is not None:
            out.append(dep.index)
        for cmd in st.commands:
            if isinstance(cmd, (df.Copy, df.Add)) and cmd.from_:
                src = df.expand_word(cmd.from_, self.meta, self.file.escape)
                dep = self.stage_by_ref(src, st.index)
                if dep is not None:
                    out.append(dep.index)
        return out

    def needed(self) -> list[df.Stage]:
        stages = self.file.stages
        if self.opts.target:
            hits = [s for s in stages if s.name == self.opts.target.lower()]
            if not hits:
                raise InvalidArgument(
                    f"failed to reach build target {self.opts.target} in Dockerfile")
            last = hits[0]
        else:
            last = stages[-1]
        want = {last.index}
        todo = [last.index]
        while todo:
            for d in self._deps(stages[todo.pop()]):
                if d not in want:
                    want.add(d)
                    todo.append(d)
        return [s for s in stages if s.index in want]

    # --- running ------------------------------------------------------------------------------

    async def run(self) -> str:
        stages = self.needed()
        final = stages[-1]
        extra = self._label_step()
        meta = self.file.meta_args
        total = len(meta) + sum(1 + len(s.commands) for s in stages) + (1 if extra else 0)
        out = Output(self.emit, self.opts.quiet, len(stages))
        for i, arg in enumerate(meta):  # counted and shown as steps, as the classic builder
            if not self.opts.quiet:
                self.emit({"stream": f"Step {i + 1}/{total} : {arg.original}\n"})
        numbers: dict[int, int] = {}
        n = len(meta)
        for s in stages:
            numbers[s.index] = n
            n += 1 + len(s.commands)
        loop = asyncio.get_running_loop()
        for s in stages:
            self.results[s.index] = loop.create_future()
        tasks = []
        for pos, s in enumerate(stages):
            cmds = list(s.commands) + ([extra] if extra and s is final else [])
            tasks.append(asyncio.create_task(
                self._stage(s, cmds, numbers[s.index], total, out, pos)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                exc = t.exception()
                if exc is not None:
                    raise exc
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        unused = sorted(k for k in self.opts.build_args
                        if k not in self.used_args and k not in PREDEFINED_ARGS
                        and k != "SOURCE_DATE_EPOCH")
        if unused and not self.opts.quiet:
            self.emit({"stream": f"[Warning] One or more build-args [{' '.join(unused)}] "
                                 "were not consumed\n"})
        state = self.results[final.index].result()
        if not state.image:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        if self.opts.squash and state.image != state.base:
            return await asyncio.to_thread(self._squash, state)
        return state.image

    def _squash(self, state: StageState) -> str:
        """--squash: the final stage's own layers as one, on top of its base image."""
        from pallet.image.digest import Digest
        from pallet.storage.compression import open_decompressed
        from pallet.storage.squash import squash

        images = self.images
        ours = images.db.layers(state.image)[len(images.db.layers(state.base))
                                             if state.base else 0:]
        cfg = images.config(state.image)
        if any(not row.blob for row in ours):
            raise NotSupported("--squash: a layer of the image is not kept as a blob here")
        with contextlib.ExitStack() as stack:
            streams = [open_decompressed(stack.enter_context(images.store.open(
                Digest.parse(row.blob)))) for row in ours]
            layer = squash(streams, images.tmp) if ours else None
            return images.add_step(
                state.base, layer, cfg.get("config") or {},
                {"created_by": "", "comment": f"merge {state.image} to {state.base}"},
                self.created(), author=cfg.get("author", ""))

    def _label_step(self) -> df.Command | None:
        """--label becomes one more LABEL step at the end, as the classic builder adds."""
        if not self.opts.labels:
            return None
        import json

        line = "LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}"
                                   for k, v in self.opts.labels.items())
        return df.parse_instruction(line, "\\", 0)

    async def _stage(self, s: df.Stage, cmds: list[df.Command], first: int, total: int,
                     out: Output, pos: int) -> None:
        write = out.writer(pos)
        fut = self.results[s.index]
        try:
            state = StageState(stage=s)
            step = Step(self, state, write)
            await step.from_(s.from_, first + 1, total)
            for i, cmd in enumerate(cmds):
                await step.dispatch(cmd, first + 2 + i, total)
            fut.set_result(state)
        except BaseException as exc:
            out.flush(pos)
            if not fut.done():
                fut.set_exception(exc if isinstance(exc, Exception) else BuildError("cancelled"))
                fut.exception()  # retrieved: the stage's own task reports it
            raise
        finally:
            out.finish(pos)

    async def stage_result(self, index: int) -> StageState:
        return await asyncio.shield(self.results[index])

    def stage_tmp(self) -> str:
        return tempfile.mkdtemp(dir=self.work, prefix="step-")

    @staticmethod
    def remove_tmp(path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

