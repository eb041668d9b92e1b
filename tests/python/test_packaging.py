"""Packaging checks (make test-ops): the man page documents what `tensord --help` prints, the
systemd unit passes systemd-analyze, and `make install` places every file where it belongs.

TENSORD_BIN names the daemon whose --help is the reference (make sets it). The install test
runs make on the build directory that holds that daemon, so it installs what was just tested.
"""
import functools
import os
import re
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.path.abspath(os.environ.get("TENSORD_BIN", os.path.join(ROOT, "build", "tensord")))
MAN = os.path.join(ROOT, "docs", "man", "tensord.8")
UNIT_IN = os.path.join(ROOT, "packaging", "tensord.service.in")


@functools.lru_cache(maxsize=None)
def help_flags():
    """((flag, arg or None, default or None), ...) from `tensord --help` (run once)."""
    out = subprocess.run([BINARY, "--help"], capture_output=True, text=True, check=True).stdout
    flags = []
    for line in out.splitlines():
        m = re.match(r"\s+--([a-z0-9-]+)(?: ([A-Z:]+))?\s+(.*)$", line)
        if m:
            d = re.search(r"\(default: ([^)]*)\)\s*$", m.group(3))
            flags.append((m.group(1), m.group(2), d.group(1) if d else None))
    assert len(flags) >= 10, out
    return tuple(flags)


@functools.lru_cache(maxsize=None)
def man_text():
    """The man page as a reader sees it: rendered by groff to plain text, hyphenation off."""
    env = dict(os.environ, LC_ALL="C.UTF-8")
    r = subprocess.run(["groff", "-man", "-Tascii", "-P-cbou", "-rLL=200n", "-rHY=0", MAN],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def man_entries():
    """{flag: the text of its entry under OPTIONS}."""
    text = man_text()
    opts = text.split("\nOPTIONS\n", 1)[1].split("\nCONFIGURATION FILE\n", 1)[0]
    entries, cur = {}, None
    for line in opts.splitlines():
        m = re.match(r"\s{7}--([a-z0-9-]+)\b", line)
        if m and not line.startswith(" " * 8):
            cur = m.group(1)
            entries[cur] = line
        elif cur is not None:
            entries[cur] += " " + line.strip()
    return entries


# --- the man page ---

def test_man_page_documents_every_flag_with_its_default():
    entries = man_entries()
    missing = [f for f, _, _ in help_flags() if f not in entries]
    assert not missing, f"flags in tensord --help but not in docs/man/tensord.8: {missing}"
    for flag, arg, default in help_flags():
        entry = entries[flag]
        if arg is not None:
            assert f"--{flag} {arg}" in entry, f"--{flag}: want the synopsis '--{flag} {arg}'"
        if default is not None:
            assert "Default:" in entry, f"--{flag}: the entry names no default"
            # A value (1G, 127.0.0.1:7878, 10m, text) must appear as printed; a description
            # such as 'half of RAM' may be worded for the page.
            if " " not in default and default not in ("none", "off"):
                assert re.search(r"Default:\s*" + re.escape(default) + r"\b", entry), \
                    f"--{flag}: want 'Default: {default}' as tensord --help prints it"


def test_man_page_names_every_environment_variable():
    text = man_text()
    for flag, arg, _ in help_flags():
        if flag in ("help", "version", "config", "check-config"):
            continue  # actions (and --config, read first) have no variable
        var = "TENSORD_" + flag.upper().replace("-", "_")
        assert var in text, f"{var} (for --{flag}) is not in the man page"
    assert "TENSORD_CONFIG" in text


def test_man_page_sections():
    text = man_text()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "CONFIGURATION FILE",
                    "ENVIRONMENT", "SIGNALS", "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert f"\n{section}\n" in text, f"no {section} section"
    signals = text.split("\nSIGNALS\n", 1)[1].split("\nFILES\n", 1)[0]
    for sig in ("SIGTERM", "SIGINT", "SIGHUP"):
        assert sig in signals


def test_man_page_renders_without_warnings():
    env = dict(os.environ, LC_ALL="C.UTF-8")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", MAN], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["mandoc", "-Tlint", MAN], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


# --- make install and the systemd unit ---

def make_install(destdir, prefix):
    build = os.path.relpath(os.path.dirname(BINARY), ROOT)
    r = subprocess.run(["make", "-C", ROOT, "--no-print-directory", "install",
                        f"DESTDIR={destdir}", f"PREFIX={prefix}", f"BUILD={build}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def installed():
    d = tempfile.mkdtemp(prefix="tensord-install-")
    make_install(d, "/usr")
    yield d
    shutil.rmtree(d)


def test_make_install_places_everything(installed):
    usr = os.path.join(installed, "usr")
    expect = {
        "bin/tensord": 0o755,
        "lib/libtensord.a": 0o644,
        "lib/libtensord.so.0": 0o755,
        "include/tensord.h": 0o644,
        "lib/pkgconfig/tensord.pc": 0o644,
        "lib/systemd/system/tensord.service": 0o644,
        "share/man/man8/tensord.8": 0o644,
    }
    if os.path.exists(os.path.join(os.path.dirname(BINARY), "tensorctl")):
        expect["bin/tensorctl"] = 0o755
    for rel, mode in expect.items():
        path = os.path.join(usr, rel)
        assert os.path.isfile(path), f"make install did not place {rel}"
        assert os.stat(path).st_mode & 0o777 == mode, f"{rel}: mode {oct(os.stat(path).st_mode)}"
    assert os.readlink(os.path.join(usr, "lib/libtensord.so")) == "libtensord.so.0"
    with open(os.path.join(usr, "lib/pkgconfig/tensord.pc")) as f:
        assert "prefix=/usr" in f.read()
    for page in os.listdir(os.path.join(ROOT, "docs", "man")):
        section = page.rsplit(".", 1)[-1]
        if section.isdigit():
            assert os.path.isfile(os.path.join(usr, "share/man", "man" + section, page)), page
    out = subprocess.run([os.path.join(usr, "bin/tensord"), "--version"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.startswith("tensord ")


def unit_lines(path):
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]


def test_unit_exec_start_follows_prefix(installed):
    unit = os.path.join(installed, "usr/lib/systemd/system/tensord.service")
    assert "ExecStart=/usr/bin/tensord" in unit_lines(unit)
    with tempfile.TemporaryDirectory(prefix="tensord-install-") as d:
        make_install(d, "/opt/tensord")
        unit = os.path.join(d, "opt/tensord/lib/systemd/system/tensord.service")
        assert "ExecStart=/opt/tensord/bin/tensord" in unit_lines(unit)
        assert os.path.isfile(os.path.join(d, "opt/tensord/share/man/man8/tensord.8"))


def test_installed_unit_passes_systemd_analyze_verify(installed):
    # systemd-analyze checks that ExecStart's binary exists, so the installed unit is verified
    # with its path moved into DESTDIR; MANPATH lets it resolve Documentation=man:tensord(8)
    # to the installed page. Any warning (an unknown or misspelt key) fails the test.
    d = tempfile.mkdtemp(prefix="tensord-unit-")
    try:
        src = os.path.join(installed, "usr/lib/systemd/system/tensord.service")
        with open(src) as f:
            text = f.read()
        assert "ExecStart=/usr/bin/tensord" in text
        text = text.replace("ExecStart=/usr/bin/tensord",
                            "ExecStart=" + os.path.join(installed, "usr/bin/tensord"))
        unit = os.path.join(d, "tensord.service")
        with open(unit, "w") as f:
            f.write(text)
        env = dict(os.environ, MANPATH=os.path.join(installed, "usr/share/man"),
                   SYSTEMD_LOG_COLOR="0")
        r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                           env=env)
        assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", \
            r.stdout + r.stderr
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                            unit], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        m = re.search(r"Overall exposure level for tensord.service: ([0-9.]+)", r.stdout)
        assert m and float(m.group(1)) <= 2.0, r.stdout[-400:]
    finally:
        shutil.rmtree(d)


def test_unit_hardening():
    lines = unit_lines(UNIT_IN)
    for want in ("DynamicUser=yes", "StateDirectory=tensord", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute=yes",
                 "SystemCallFilter=@system-service", "CapabilityBoundingSet=",
                 "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM",
                 "Environment=TENSORD_DATA_DIR=/var/lib/tensord"):
        assert want in lines, f"the unit lacks {want}"
    assert any(ln.startswith("TimeoutStopSec=") for ln in lines)


def test_unit_runs_the_daemon_without_flags_it_lacks():
    # ExecStart passes no flag: settings come from the environment, and every TENSORD_ variable
    # the unit sets must name a flag the man page documents.
    entries = man_entries()
    for ln in unit_lines(UNIT_IN):
        for var in re.findall(r"TENSORD_([A-Z_]+)=", ln):
            assert var.lower().replace("_", "-") in entries, var


# --- the container files (make docker-test builds and runs them; these checks need no engine) ---

def read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


def test_dockerfile_runtime_stage():
    text = read("docker/Dockerfile")
    runtime = text[text.rindex("\nFROM "):]      # the last stage is the image
    for want in ("\nUSER 10001:10001", "\nEXPOSE 7878", "\nHEALTHCHECK ", "\nSTOPSIGNAL SIGTERM",
                 '\nENTRYPOINT ["/usr/local/bin/tensord"]', '\nVOLUME ["/var/lib/tensord"]'):
        assert want in runtime, f"the runtime stage lacks {want.strip()}"
    assert "make WERROR=1 $TESTS" in text, "the build stage runs no tests"
    entries = man_entries()
    for var in re.findall(r"TENSORD_([A-Z_]+)=", runtime):
        assert var.lower().replace("_", "-") in entries, var


def test_compose_publishes_on_loopback_only():
    text = read("docker/compose.yaml")
    ports = re.findall(r'^\s+- "([^"]+)"', text, re.M)
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports
    assert "tensord_token" in text and "/var/lib/tensord" in text
    # The token file lives in docker/secrets: never in the build context, never committed.
    assert "docker/secrets" in read("docker/Dockerfile.dockerignore").split()
    assert "secrets/" in read("docker/.gitignore").split()


def test_scripts_parse():
    for script in ("docker/base-image.sh", "docker/deps.sh", "tests/ops/docker_test.sh",
                   "tests/ops/compose_test.sh"):
        r = subprocess.run(["sh", "-n", os.path.join(ROOT, script)], capture_output=True, text=True)
        assert r.returncode == 0, script + ": " + r.stderr
    r = subprocess.run(["bash", "-n", os.path.join(ROOT, "docker/healthcheck.sh")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
