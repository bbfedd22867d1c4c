"""so_luigi's settings as Luigi reads them: the sections of ``config.SETTINGS`` made luigi.Config
classes (so luigi.cfg sets them, on any host of a run), and the Luigi settings so_luigi needs
wherever it runs (exit codes, connection caps), filled in where no config file set them.

Imported by the Luigi layer (``so_luigi/__init__``); the engine reads settings through
``config.section`` and never imports Luigi.
"""
import luigi
import luigi.configuration
from luigi.cmdline_parser import CmdlineParser

from . import config


# Luigi settings so_luigi needs wherever it runs: Luigi reads luigi.cfg only from the working
# directory (or LUIGI_CONFIG_PATH), and its own defaults exit 0 when a task failed and grant one
# unit of an unconfigured resource. ``apply_luigi_defaults`` fills in each key no config file
# set, so a user's luigi.cfg still overrides every one.
LUIGI_DEFAULTS = {
    # non-zero exit codes when anything failed or could not run (Luigi's own are all 0)
    "retcode": {"already_running": 10, "missing_data": 20, "not_run": 25, "task_failed": 30,
                "scheduling_error": 35, "unhandled_exception": 40},
    # connections each database sees, whatever the number of workers and hosts sharing a luigid
    "resources": {"source_connections": 8, "target_connections": 16},
    "core": {"log_level": "INFO", "autoload_range": "false"},
    # a table whose partitions were proven done when scheduled may find some read at a source
    # snapshot lost since: its task proves them (recover.complete_table) instead of failing
    "worker": {"check_unfulfilled_deps": "false"},
}


def apply_luigi_defaults():
    """Set every key of LUIGI_DEFAULTS that no Luigi config file set (public parser API only:
    has_option, add_section, set). Done when so_luigi is imported, before Luigi reads [retcode]
    or its scheduler reads [resources]."""
    cfg = luigi.configuration.get_config()
    typed = not isinstance(cfg, luigi.configuration.LuigiConfigParser)     # TOML keeps values typed
    for section, values in LUIGI_DEFAULTS.items():
        for key, value in values.items():
            if cfg.has_option(section, key):
                continue
            if not typed and not cfg.has_section(section):
                cfg.add_section(section)
            cfg.set(section, key, value if typed else str(value))


def share_caps(scheduler, log):
    """Give ``scheduler`` so_luigi's connection caps ([resources], as this process's Luigi config
    has them) where it has none: a plain luigid grants 1 of a resource it does not know, so every
    worker of every process would load one partition at a time. A resource it has is never
    changed. Says what it set; a scheduler that cannot say is left as it is, with a warning."""
    try:
        have = {r["name"] for r in scheduler.resource_list()}
        cfg = luigi.configuration.get_config()
        for name, default in LUIGI_DEFAULTS["resources"].items():
            if name in have:
                continue
            amount = int(cfg.get("resources", name, default))
            if scheduler.update_resource(name, amount):
                log.info("the scheduler had no [resources] %s: set to %d (so_luigi's cap of %s across every "
                         "worker and host sharing it)", name, amount, name.replace("_", " "))
    except Exception as exc:  # noqa: BLE001 -- an older scheduler: the run goes on, at its pace
        log.warning("could not read or set the scheduler's [resources] (%s): a scheduler without them runs one "
                    "task at a time; start it with `so-luigi luigid` or set [resources] in its luigi.cfg", exc)


def _parameter(default, description, choices=None):
    if choices:
        return luigi.ChoiceParameter(choices=choices, default=default, description=description)
    kind = {bool: luigi.BoolParameter, int: luigi.IntParameter, float: luigi.FloatParameter}.get(type(default),
                                                                                            luigi.Parameter)
    return kind(default=default, description=description)


# one luigi.Config per section; the class name is the luigi.cfg section name
SECTIONS = {name: type(name, (luigi.Config,), {key: _parameter(*spec) for key, spec in keys.items()})
            for name, keys in config.SETTINGS.items()}


def _cached(name, cls):
    """A reader of ``cls``'s values that makes the luigi.Config (whose parameter lookups cost
    about 0.4 ms: several thousand a run) only when its section of the config files or the
    command line it was made under changed since the last read."""
    seen = {}

    def read():
        cfg = luigi.configuration.get_config()
        raw = getattr(cfg, "_sections", None)         # ConfigParser's; the TOML parser's is ``data``
        values = (raw if raw is not None else getattr(cfg, "data", {})).get(name)
        text = repr(sorted(values.items())) if values else ""
        if "$" in text:                                 # an ${ENV} interpolation: read afresh each time
            return cls()
        key = (id(cfg), id(CmdlineParser.get_instance()), text)
        if seen.get("key") != key:
            seen["values"], seen["key"] = cls(), key
        return seen["values"]
    return read


config.read_sections_with({name: _cached(name, cls) for name, cls in SECTIONS.items()})
