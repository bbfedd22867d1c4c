"""A SQL Server URL's query string: TLS, certificate checking, TDS version, named instances,
application intent and timeouts, checked once when the URL is read and turned into pymssql's
arguments (and, where FreeTDS takes a setting only from freetds.conf, a section of so_luigi's own).

    mssql://user:pw@db.example.com/Sales?encrypt=require&ca_file=/etc/ssl/our-ca.pem
    mssql://user:pw@host\\INSTANCE/Sales?application_intent=readonly&query_timeout=600

Nothing here holds a password: the conf sections carry where and how to connect, the login
carries who.
"""
import hashlib
import os
import ssl
import tempfile
import threading
from dataclasses import dataclass

from .errors import ConfigError

# name -> (values, what it does): the README's table is written from the same words
OPTIONS = {
    "encrypt": ("off, request, require", "TLS: `request` (the default) encrypts when the server "
                "offers it, `require` refuses a server that does not; `off` asks for none (a server "
                "that forces TLS still gets it)"),
    "trust_server_certificate": ("yes, no", "`yes` encrypts without checking the server's "
                                 "certificate; by default `encrypt=require` checks it against the "
                                 "system's CAs, and any `ca_file` is checked"),
    "ca_file": ("a path, or `system`", "PEM file of the CAs that sign the server's certificate "
                "(checked for every TLS connection)"),
    "certificate_hostname": ("a host name", "the name the certificate must carry, when it is not "
                             "the URL's host (connecting by IP address or through a tunnel)"),
    "tds_version": ("7.0 to 7.4", "TDS protocol version (default: the newest both sides speak)"),
    "instance": ("a name", "named instance, found through the SQL Server Browser (UDP 1434); the "
                 "same as `host\\INSTANCE`; an explicit port wins over it"),
    "application_intent": ("readwrite, readonly", "`readonly` lets an availability group route "
                           "the source to a readable secondary"),
    "login_timeout": ("seconds", "give up connecting after this long (default 15)"),
    "query_timeout": ("seconds", "cancel a statement that runs longer (default 0: never)"),
    "driver": ("auto, pymssql, mssql-python", "how a source's rows are read into PostgreSQL, and a "
               "destination's read back for full verification: `auto` (the default) through mssql-python's "
               "Arrow batches when `so_luigi[fast-mssql]` is installed and can honour the URL, else pymssql; "
               "`mssql-python` fails where it cannot"),
    "copy": ("auto, csv", "how a source's Arrow batches go into PostgreSQL's COPY: `auto` (the default) as "
             "binary COPY (pgpq) where every column's type allows, else CSV; `csv` always as CSV"),
    "writer": ("auto, pymssql, freebcp", "how partitions from PostgreSQL are written into a destination: "
               "`auto` (the default) through FreeTDS's `freebcp` (its bulk copy in C) for partitions of "
               "20,000 rows or more when it is installed and the URL needs no TLS, instance or TDS version "
               "option, else pymssql's bulk copy; `freebcp` for every partition it can carry"),
}

TDS_VERSIONS = ("7.0", "7.1", "7.2", "7.3", "7.4")
YES, NO = ("yes", "true", "1", "on"), ("no", "false", "0", "off")


@dataclass(frozen=True)
class Options:
    encrypt: str = ""                   # "" leaves FreeTDS's own default (request)
    check_certificate: bool = False
    ca_file: str = ""
    certificate_hostname: str = ""
    tds_version: str = ""
    instance: str = ""
    read_only: bool = False
    login_timeout: int = 15
    query_timeout: int = 0
    check_hostname: bool = True         # off only to tell a wrong name from a wrong CA
    system_cas: bool = False            # ca_file is the system's bundle, not one the URL named
    driver: str = ""                    # "", pymssql or mssql-python (fast.why_not)
    writer: str = ""                    # "", auto, pymssql or freebcp (destination.write)
    copy: str = ""                      # "", auto or csv (source.copy_reader)

    @property
    def needs_conf(self):
        """FreeTDS reads certificate checking only from freetds.conf."""
        return self.check_certificate


def parse(pairs, host, where):
    """Options from a URL's query pairs, or ConfigError naming the key or value to fix.
    ``host`` may end in ``\\INSTANCE``; returns (host, Options)."""
    given = {}
    for key, value in pairs:
        key = key.lower()
        if key == "host":
            continue
        if key not in OPTIONS:
            raise ConfigError(f"{where}: unknown option {key!r} in the URL's query; "
                              f"use {', '.join(OPTIONS)}")
        if key in given:
            raise ConfigError(f"{where}: option {key!r} given twice")
        given[key] = value.strip()

    def bad(key, why):
        return ConfigError(f"{where}: {key}={given[key]!r}: {why}")

    def choice(key, values, default=""):
        value = given.get(key, default).lower()
        if value and value not in values:
            raise bad(key, f"use {' or '.join(values)}")
        return value

    def flag(key):
        value = given.get(key, "").lower()
        if value and value not in YES + NO:
            raise bad(key, "use yes or no")
        return None if not value else value in YES

    def seconds(key, default):
        if key not in given:
            return default
        try:
            value = int(given[key])
        except ValueError:
            raise bad(key, "a whole number of seconds") from None
        if value < 0:
            raise bad(key, "a whole number of seconds, 0 or more")
        return value

    instance = given.get("instance", "")
    if "\\" in host:
        host, _, named = host.partition("\\")
        if instance and named.lower() != instance.lower():
            raise ConfigError(f"{where}: two instances named, {named!r} in the host and {instance!r} "
                              "in the query")
        instance = instance or named
    if not host:
        raise ConfigError(f"{where}: no host before the instance name")
    encrypt = choice("encrypt", ("off", "request", "require"))
    trust = flag("trust_server_certificate")
    ca_file = given.get("ca_file", "")
    if trust and ca_file:
        raise ConfigError(f"{where}: trust_server_certificate=yes and ca_file together: the "
                          "certificate is either trusted unchecked or checked against the CA file")
    if encrypt == "off" and (ca_file or trust is not None or "certificate_hostname" in given):
        raise ConfigError(f"{where}: encrypt=off with certificate options: drop them or encrypt")
    check = bool(ca_file) or (encrypt == "require" and trust is not True)
    system = check and ca_file.lower() in ("", "system")
    if check:
        ca_file = system_cas(where) if ca_file.lower() in ("", "system") else ca_file
        if not os.access(ca_file, os.R_OK) or not os.path.isfile(ca_file):
            raise ConfigError(f"{where}: ca_file={ca_file!r} is not a readable file")
    if "certificate_hostname" in given and not check:
        raise ConfigError(f"{where}: certificate_hostname names what a checked certificate must "
                          "carry: set encrypt=require or ca_file as well")
    return host, Options(
        encrypt=encrypt, check_certificate=check, ca_file=os.path.abspath(ca_file) if check else "",
        certificate_hostname=given.get("certificate_hostname", ""),
        tds_version=choice("tds_version", TDS_VERSIONS), instance=instance,
        read_only=choice("application_intent", ("readwrite", "readonly")) == "readonly",
        login_timeout=seconds("login_timeout", 15), query_timeout=seconds("query_timeout", 0),
        system_cas=system, driver=choice("driver", ("auto", "pymssql", "mssql-python")),
        writer=choice("writer", ("auto", "pymssql", "freebcp")), copy=choice("copy", ("auto", "csv")))


def system_cas(where):
    """The system's CA bundle: FreeTDS's bundled OpenSSL looks where its build machine kept it,
    so the path is found here."""
    paths = ssl.get_default_verify_paths()
    for path in (os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile,
                 "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                 "/etc/ssl/cert.pem"):
        if path and os.path.isfile(path):
            return path
    raise ConfigError(f"{where}: encrypt=require checks the server's certificate, and no system CA "
                      "bundle was found: set ca_file=/path/to/ca.pem (or trust_server_certificate=yes)")


def connect_args(url, opts):
    """pymssql.connect's keyword arguments for ``url`` (a DbUrl) with ``opts``."""
    args = dict(user=url.user, password=url.password, database=url.database,
                login_timeout=opts.login_timeout, timeout=opts.query_timeout, read_only=opts.read_only)
    if opts.encrypt:
        args["encryption"] = opts.encrypt
    if opts.tds_version:
        args["tds_version"] = opts.tds_version
    server = conf_section(url, opts) if opts.needs_conf else url.host
    if url.port or not opts.instance:
        args.update(server=server, port=str(url.port or 1433))
    else:
        args["server"] = f"{server}\\{opts.instance}"       # FreeTDS asks the Browser for the port
    return args


_CONF_LOCK = threading.Lock()
_SECTIONS = {}
_USERS_CONF = os.environ.get("FREETDSCONF")     # a freetds.conf of the user's own: copied in first


def conf_section(url, opts):
    """The name of a freetds.conf section holding ``url``'s host and certificate checking, in a
    file of so_luigi's own that $FREETDSCONF names from then on. The file only ever grows within
    a process (a new one per set of sections), so a connection opened on another thread always
    finds its section. A $FREETDSCONF the user had is copied in ahead of so_luigi's sections; a
    server name FreeTDS does not find in the file is looked up in ~/.freetds.conf and the system's."""
    lines = [f"host = {url.host}", f"encryption = {opts.encrypt or 'request'}",
             f"ca file = {opts.ca_file}",
             f"check certificate hostname = {'yes' if opts.check_hostname else 'no'}"]
    if opts.certificate_hostname:
        lines.append(f"certificate hostname = {opts.certificate_hostname}")
    if url.port or not opts.instance:
        lines.append(f"port = {url.port or 1433}")
    else:
        lines.append(f"instance = {opts.instance}")
    body = "".join(f"\t{line}\n" for line in lines)
    name = "so_luigi_" + hashlib.sha1(body.encode()).hexdigest()[:12]
    with _CONF_LOCK:
        if name not in _SECTIONS:
            _SECTIONS[name] = body
            text = "".join(f"[{n}]\n{b}" for n, b in sorted(_SECTIONS.items()))
            if _USERS_CONF and os.path.isfile(_USERS_CONF):
                with open(_USERS_CONF) as theirs:
                    text = theirs.read() + "\n" + text
            folder = os.path.join(tempfile.gettempdir(), f"so_luigi-{os.getuid()}")
            os.makedirs(folder, mode=0o700, exist_ok=True)
            path = os.path.join(folder, f"freetds-{hashlib.sha1(text.encode()).hexdigest()[:12]}.conf")
            if not os.path.exists(path):
                scratch = f"{path}.{os.getpid()}.{threading.get_ident()}"
                with open(scratch, "w") as out:
                    out.write(text)
                os.replace(scratch, path)
            os.environ["FREETDSCONF"] = path
    return name
