"""The configuration boundary: one schema with one default per key, every README key and model
settable without '+', one-line errors for every mistake, nothing heavy imported before the
checks, the reference docs read from the schema, and layers that only look down."""
import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from helpers import USER_DOCS, ROOT, compose, compose_with_hydra
from video_sparse.apps import config as schema
from video_sparse.apps.checks import check_train
from video_sparse.apps.help import reference
from video_sparse.options import text
from video_sparse.models.registry import variants

# README and the guides it links to in docs/: every key, model and command they show is tested here
README = "\n".join((ROOT / page).read_text() for page in USER_DOCS)


def _readme_keys() -> set[str]:
    """Every ``section.key`` written in README (tables, option lists, model sections)."""
    files = ("json", "csv", "txt", "mp4", "webm", "pt", "pth", "yaml", "png", "md", "py")
    keys = {k for k in re.findall(r"`((?:data|model|trainer|optim|sched|test|logger)\.[a-z_]+)", README)
            if k.split(".")[1] not in files}
    assert "`model.mixer_stage=[3]`" in README  # the misspelling README shows the error of
    keys.discard("model.mixer_stage")
    assert len(keys) > 60, sorted(keys)  # the tables are where the test expects them
    return keys


def _readme_models() -> set[str]:
    names = set()
    for row in re.findall(r"^\| `([^|]+)` \|", README, flags=re.M):
        for token in re.findall(r"[a-z0-9_/]+", row.replace("`", "")):
            if "/" in token:  # biformer_tiny/_small/_base
                first, *rest = token.split("/")
                stem = first.rsplit("_", 1)[0]
                names |= {first, *(stem + r for r in rest)}
            else:
                names.add(token)
    return {n for n in names if n in variants()}


@pytest.fixture(scope="module")
def list_dataset(tmp_path_factory):
    """A data=list dataset whose files exist (the checks look for them)."""
    root = tmp_path_factory.mktemp("list")
    for name in ("train.txt", "val.txt", "test.txt"):
        (root / name).write_text("a.mp4 0\n")
    (root / "classes.txt").write_text("a\nb\n")
    return [f"data.root={root}", "data.train_ann=train.txt", "data.val_ann=val.txt", "data.labels=classes.txt"]


def _node_field(node, key):
    return {f.name: f for f in dataclasses.fields(OmegaConf.get_type(node))}.get(key)


def test_every_readme_key_and_model_is_settable_without_plus(list_dataset):
    """Each key README names is set on the command line (no '+') to a valid value (its value in a
    config that has it) and the config passes every check; each model README names is
    selectable with model=<name>."""
    models = _readme_models()
    assert models == set(variants()), sorted(set(variants()) - models)
    contexts = [[], ["data=list", *list_dataset], *[[f"model={m}", "logger.mode=disabled"] for m in sorted(models)],
                ["optim=sgd"]]
    composed = [(context, compose("train", context)) for context in contexts]  # 0.3 s each: composed once
    for context, cfg in composed:
        if context[:1] and context[0].startswith("model="):
            check_train(cfg)
    settings = {}  # context -> the README keys found in its config, set to their values there
    for key in sorted(_readme_keys()):
        section, name = key.split(".")
        index = next((i for i, (_, cfg) in enumerate(composed) if name in cfg[section]), None)
        assert index is not None, f"README names {key}, which no config has"
        cfg = composed[index][1]
        assert _node_field(cfg[section], name).metadata["help"], key  # documented in the schema
        settings.setdefault(index, []).append(f"{key}={text(OmegaConf.to_container(cfg[section])[name])}")
    for index, overrides in settings.items():  # all of a context's keys in one command line
        check_train(compose("train", composed[index][0] + overrides))


def test_misspelt_key_is_one_line_with_the_close_match(tmp_path):
    """The error docs/training.md shows, with the default model."""
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "model.mixer_stage=[3]",
                           f"hydra.run.dir={tmp_path}/run"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: model.mixer_stage is not a config key. Did you mean model.mixer_stages? Fix: model.mixer_stages=[3]"]
    assert "error: model.mixer_stage is not a config key. Did you mean model.mixer_stages? Fix: model.mixer_stages=[3]" \
        in README
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,message", [
    (["model=c2d_smal"], "model=c2d_smal: there is no model 'c2d_smal'. Did you mean c2d_small"),
    (["data=kinetcs400"], "data=kinetcs400: there is no data 'kinetcs400'. Did you mean kinetics400"),
    (["trainer.epoch=3"], "trainer.epoch is not a config key. Did you mean trainer.epochs? Fix: trainer.epochs=3"),
    (["trainer.epochs=abc"], "trainer.epochs must be an integer, got 'abc'. Fix: trainer.epochs=11"),
    (["model.layers=abc"], "model.layers must be a list, got 'abc'. Fix: model.layers=[1,1,1,1]"),
    (["data.scale_jitter=[a,b]"], "data.scale_jitter must be a list of integers, got '[a,b]'. Fix: "
     "data.scale_jitter=null"),
    (["trainer.amp=fp8"], "trainer.amp must be one of off, bf16, fp16, got fp8. Fix: trainer.amp=off"),
    (["model.head=spatail"], "model.head must be one of pool, spatial, got spatail. Did you mean spatial?"),
    (["model=c2d_sifa_r50", "model.patterns=[P,GX,GS,GS]"], "model=c2d_sifa_r50 cannot be built with these options: "
     "unknown block codes ['X']"),
    (["model=dat_tiny", "model.num_heads=[3,6]"], "model.num_heads must be a list of 4 integers >= 1, got [3,6] (2 "
     "values). Fix: model.num_heads=[3,6,12,24]"),
    (["model=sifa_biformer_nano", "model.temporal_stages=[7]"], "model=sifa_biformer_nano cannot be built with "
     "these options: temporal_stages: stage 7 does not exist (1..4)"),
    (["model=c2d_r50", "model.pretrained=torchvision:NoSuch_Weights.X"], "model.pretrained: unknown torchvision "
     "weights 'NoSuch_Weights.X'"),
    (["predict_topk=3"], "predict_topk is not a config key"),
    (["trainer.epochs=["], "cannot read the command line"),
])
def test_user_mistakes_are_one_line_exit_2_before_any_data(tmp_path, args, message):
    """Hydra's composition errors, the checks and the model build: one line, printed once, exit 2,
    no data generated (the motion cache stays empty)."""
    cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args, f"data.cache_dir={cache}",
                           "logger.mode=disabled", f"hydra.run.dir={tmp_path}/run"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Fix:" in lines[0], proc.stderr
    assert message in lines[0]
    assert not cache.exists()


_TORCH_PROBE = """
import atexit, runpy, sys
atexit.register(lambda: print("heavy:", sorted(m for m in ("torch", "torchvision", "decord", "av", "wandb")
                                             if m in sys.modules), file=sys.stderr))
sys.argv = [{script!r}, *{args!r}]
runpy.run_path({script!r}, run_name="__main__")
"""


@pytest.mark.parametrize("script,args", [
    ("train.py", ["--help"]), ("train.py", ["model=sifa_biformer_nano", "--help"]), ("eval.py", ["--help"]),
    ("train.py", ["trainer.amp=fp8"]), ("train.py", ["model.head=spatail"]), ("train.py", ["model=foo"]),
    ("eval.py", ["checkpoint=/nope.pt"]),
])
def test_help_and_config_errors_import_nothing_heavy(tmp_path, script, args):
    """``--help`` and config errors answer before torch, torchvision, decoders or wandb load."""
    code = _TORCH_PROBE.format(script=str(ROOT / script), args=[*args, f"hydra.run.dir={tmp_path}/run"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode in (0, 2), proc.stderr
    assert "heavy: []" in proc.stderr, proc.stderr


def test_help_lists_every_key_with_its_value_and_help(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "model=c2d_sifa_r50", "data=kinetics400", "--help"],
                         capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert "[c2d_sifa_r50]" in out and "[kinetics400]" in out and "sifa_r50_k400" in out
    for line in ("model.patterns = [P,GS,GS,GS]", "data.frames = 16", "trainer.epochs = 11", "optim.lr = 0.003",
                 "test.clips = 1", "logger.mode = offline"):
        assert line in out, line
    assert "SIFA-Net: [P, GS, GS, GS]" in out  # the help text of model.patterns


def test_reference_doc_is_generated_from_the_schema():
    """docs/config.md is the output of ``python -m video_sparse.apps.help`` (regenerate it after a
    schema change)."""
    assert (ROOT / "docs" / "config.md").read_text() == reference() + "\n"


# ============================================================================= one default per key
def _leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def test_primary_configs_hold_no_values():
    """train/eval/scan.yaml: the defaults list and Hydra's settings only (values live in the schema);
    beside them the data and experiment presets and Hydra's own groups (the SLURM launcher preset)."""
    for name in ("train", "eval", "scan"):
        assert set(_yaml(ROOT / "conf" / f"{name}.yaml")) <= {"defaults", "hydra"}, name
    assert sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir()) == ["data", "experiment", "hydra"]
    assert sorted(p.name for p in (ROOT / "conf" / "hydra").rglob("*") if p.is_file()) == ["slurm.yaml"]


def test_variant_yamls_set_only_what_differs_from_their_base():
    """conf/data/*.yaml extend another option; conf/experiment/*.yaml extend their group choices.
    No key restates the value it would have without the file."""
    for path in sorted((ROOT / "conf" / "data").glob("*.yaml")):
        own = _yaml(path)
        base = OmegaConf.to_container(compose("train", [f"data={own['defaults'][0]}"]).data)
        for key, value in _leaves({k: v for k, v in own.items() if k != "defaults"}).items():
            assert base[key] != value, f"{path.name}: {key}: {value} is the default already"
    for path in sorted((ROOT / "conf" / "experiment").glob("*.yaml")):
        own = _yaml(path)
        groups = [f"{k.split('/')[-1]}={v}" for entry in own.get("defaults", []) for k, v in entry.items()]
        base = _leaves(OmegaConf.to_container(compose("train", groups)))
        for key, value in _leaves({k: v for k, v in own.items() if k != "defaults"}).items():
            assert base[key] != value, f"{path.name}: {key}: {value} is the default already"


def test_each_schema_key_has_its_default_in_one_place():
    """Defaults are declared by the schema (data, optim, sched, logger, trainer, test) and the model
    specs; no other module restates them with dict.get(key, default)."""
    for path in (ROOT / "video_sparse").rglob("*.py"):
        src = path.read_text()
        for m in re.finditer(r"cfg\.get\(\"([a-z_]+)\", ", src):
            raise AssertionError(f"{path}: cfg.get({m.group(1)!r}, <default>) restates a schema default")
    names = [f.name for f in dataclasses.fields(schema.DataConfig)]
    assert len(names) == len(set(names))


def test_constants_shared_with_torch_modules_agree():
    from video_sparse.apps import checks
    from video_sparse.data.config import RANDAUG_MAX_MAGNITUDE
    from video_sparse.data.randaugment import MAX_MAGNITUDE
    from video_sparse.models import weights
    assert RANDAUG_MAX_MAGNITUDE == MAX_MAGNITUDE and checks.TORCHVISION_PREFIX == weights.TORCHVISION_PREFIX
    assert checks.PYTORCHVIDEO_PREFIX == weights.PYTORCHVIDEO_PREFIX


def test_multirun_outputs_go_under_outputs():
    hydra = OmegaConf.to_container(compose_with_hydra("train", []).hydra, resolve=False)  # resolving creates it
    assert hydra["sweep"]["dir"].startswith("outputs/multirun/") and \
        hydra["run"]["dir"].startswith("${unique_dir:outputs/")


# ============================================================================= layers
LOWER = ("ops", "layers", "models", "data")
FORBIDDEN = {"ops": ("layers", "models", "data", "engine", "apps", "config", "tracking"),
             "layers": ("models", "data", "engine", "apps", "config", "tracking"),
             "models": ("data", "engine", "apps", "config", "tracking"),
             "data": ("ops", "layers", "models", "engine", "apps", "config", "tracking"),
             "engine": ("apps", "config")}


def _imports(path: Path, package: str) -> set[str]:
    """Every module an ``import`` statement of ``path`` names (anywhere in the file), absolute."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    return found


def test_layers_only_look_down():
    """ops <- layers <- models; data on its own; engine below the apps. Imports inside functions
    count too."""
    pkg = ROOT / "video_sparse"
    for layer, forbidden in FORBIDDEN.items():
        for path in (pkg / layer).rglob("*.py"):
            package = "video_sparse." + ".".join(path.relative_to(pkg).parent.parts)
            for module in _imports(path, package):
                for bad in forbidden:
                    assert not module.startswith(f"video_sparse.{bad}"), f"{path.relative_to(ROOT)} imports {module}"


APP_MODULES = ("train", "eval", "export", "scan")


def _import_graph() -> dict[str, set[str]]:
    """``{module: the package's modules it imports}`` (imports inside functions too)."""
    pkg = ROOT / "video_sparse"
    paths = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in pkg.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = {m for m in _imports(path, package) if m in paths and m != name}
    return graph


def test_apps_are_shims_that_import_no_other_app_and_the_package_has_no_import_cycle():
    graph = _import_graph()
    for app in APP_MODULES:
        module = f"video_sparse.apps.{app}"
        others = {f"video_sparse.apps.{a}" for a in APP_MODULES} - {module}
        assert not graph[module] & others, f"{module} imports {graph[module] & others}"
        lines = len((ROOT / "video_sparse" / "apps" / f"{app}.py").read_text().splitlines())
        assert lines <= 80, f"apps/{app}.py has {lines} lines: its work belongs in the engine or data"
    done, on_path = set(), []

    def visit(module):  # depth-first; a module met again on the current path closes a cycle
        if module in on_path:
            raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(module):] + [module]))
        if module in done:
            return
        on_path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        on_path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def _readme_commands() -> list[tuple[str, list[str]]]:
    """``(config, overrides)`` of every ``python train.py`` / ``eval.py`` / ``torchrun`` line in
    README's code blocks (continuation lines joined, comments and placeholders dropped)."""
    import shlex

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split("  #")[0])
            script = next((w for w in words if w in ("train.py", "eval.py")), None)
            if script is None:
                continue
            args = [w for w in words[words.index(script) + 1:]
                    if "=" in w and not w.startswith(("hydra.", "hydra/")) and "..." not in w and "<" not in w]
            commands.append((script.removesuffix(".py"), args))
    assert len(commands) > 15, commands
    return commands


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip("# \n").lower()).replace(" ", "-")


def test_readme_is_short_and_every_link_of_the_user_docs_resolves():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    for page in USER_DOCS:
        path = ROOT / page
        text = path.read_text()
        assert page == "README.md" or f"]({page})" in (ROOT / "README.md").read_text(), f"README does not link {page}"
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            assert linked.exists(), f"{page} links {target}: no such file"
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#{1,4} .*$", linked.read_text(), flags=re.M)
                assert anchor in {_slug(h) for h in headings}, f"{page} links {target}: no such heading"


def test_readme_commands_compose():
    """Every train.py / eval.py command README shows composes as written (groups, keys, types)."""
    for config, args in _readme_commands():
        compose(config, args)


def test_an_older_checkpoints_data_config_is_completed_by_the_schema():
    """eval.py reads a checkpoint's data config; keys an older video_sparse did not write take the
    schema's one default, overrides win, keys the schema no longer has are dropped."""
    from video_sparse.engine.loading import checkpoint_data_config

    old = {"name": "motion", "root": "/cache/set", "frames": 4, "size": 64, "retired_key": 1}
    cfg = checkpoint_data_config(old, OmegaConf.create({"root": None, "val_ann": "/other/val.txt"}))
    assert (cfg.root, cfg.val_ann, cfg.frames, cfg.sampling, cfg.randaug_m, cfg.video_size) == (
        "/cache/set", "/other/val.txt", 4, "uniform", 27, 64)
    assert "retired_key" not in cfg
    listed = checkpoint_data_config({"name": "kinetics400", "root": "/k", "train_ann": "t.csv", "val_ann": "v.csv",
                                     "labels": None, "sampling": "dense"}, OmegaConf.create({}))
    assert listed.sampling == "dense" and listed.short_video == "loop" and "video_size" not in listed


@pytest.mark.parametrize("app, override, key", [
    ("train", "optim.lr=nan", "optim.lr"), ("train", "trainer.label_smoothing=nan", "trainer.label_smoothing"),
    ("train", "optim.betas=[0.9,inf]", "optim.betas"), ("eval", "predict.window=inf", "predict.window")])
def test_a_non_finite_number_is_refused_before_any_data(trained_run, app, override, key):
    """nan passes every bound check and inf is no setting: one line naming the key."""
    from video_sparse.apps.checks import check_eval, check_train
    from video_sparse.options import ConfigError

    args = [override] if app == "train" else [f"checkpoint={trained_run}/checkpoints/best.pt", f"predict={ROOT}/README.md",
                                              override]
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)} must be a finite number, got .*(nan|inf).*Fix: "):
        (check_train if app == "train" else check_eval)(compose(app, args))
