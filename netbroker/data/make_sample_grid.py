"""Deterministic generator for netbroker's sample grid registry.

The output follows the JSON layout of ATLAS CRIC (clouds, sites, DDM
endpoints with their protocols, PanDA queues with their storages, network
routes) plus a small Rucio-like dataset catalogue, so the importer, the
brokerage and the pilot's documents can be exercised without access to a
real grid. Site names, clouds, countries and network domains follow real
WLCG/ATLAS sites, except the tier-3s named ``<CC>-<INSTITUTE>-T3``, which
are invented; capacities, queue parameters, host names, storage paths,
protocol ids and datasets are synthetic, and the networks come from
reserved ranges (198.18.0.0/15, RFC 2544; 2001:db8:a000::/36, RFC 3849).

Regenerate from the repository root with::

    python -m netbroker.data.make_sample_grid > netbroker/data/sample_grid.json

The output is reproducible byte for byte: every random draw comes from a
``random.Random`` seeded with a fixed string, and nothing reads the clock,
the environment or the network.
"""

from __future__ import annotations

import json
import random
import sys
import uuid
import zlib
from collections.abc import Iterator
from typing import Any, NamedTuple

Record = dict[str, Any]
SiteRow = tuple[str, str, int, str, str]

SEED = "netbroker-sample-grid-v1"
TB = 10**12
GB = 10**9

# (cloud, country, ((site, tier, network domains), ...)); domains are space
# separated, main one first. Each domain belongs to one site only (the importer
# maps hosts to sites by them). Exactly one tier-0/1 site per cloud: its "tier1".
SITE_GROUPS: tuple[tuple[str, str, tuple[tuple[str, int, str], ...]], ...] = (
    ("CERN", "Switzerland", (("CERN-PROD", 0, "cern.ch"), ("CERN-P1", 2, "atlas-p1.cern.ch"))),
    ("DE", "Germany", (
        ("FZK-LCG2", 1, "gridka.de kit.edu"), ("DESY-HH", 2, "desy.de"), ("DESY-ZN", 2, "ifh.de"),
        ("LRZ-LMU", 2, "lrz.de physik.uni-muenchen.de"), ("MPPMU", 2, "mpp.mpg.de rzg.mpg.de"),
        ("wuppertalprod", 2, "uni-wuppertal.de"), ("GoeGrid", 2, "gwdg.de uni-goettingen.de"),
        ("UNI-FREIBURG", 2, "uni-freiburg.de"), ("DE-UNI-BONN-T3", 3, "physik.uni-bonn.de"),
        ("DE-UNI-MAINZ-T3", 3, "uni-mainz.de"), ("DE-TU-DORTMUND-T3", 3, "tu-dortmund.de"),
        ("DE-TU-DRESDEN-T3", 3, "tu-dresden.de"), ("DE-UNI-SIEGEN-T3", 3, "uni-siegen.de"),
        ("DE-UNI-HEIDELBERG-T3", 3, "kip.uni-heidelberg.de"),
    )),
    ("DE", "Czech Republic", (("praguelcg2", 2, "farm.particle.cz"),)),
    ("DE", "Poland", (("PSNC", 2, "man.poznan.pl"), ("CYFRONET-LCG2", 2, "cyfronet.pl"))),
    ("DE", "Switzerland", (
        ("CSCS-LCG2", 2, "cscs.ch"), ("UNIBE-LHEP", 2, "lhep.unibe.ch"),
        ("UNIGE-DPNC", 3, "unige.ch"),
    )),
    ("DE", "Slovakia", (
        ("FMPhI-UNIBA", 2, "dnp.fmph.uniba.sk"), ("IEPSAS-Kosice", 2, "saske.sk"),
    )),
    ("DE", "Austria", (("HEPHY-UIBK", 2, "uibk.ac.at"),)),
    ("FR", "France", (
        ("IN2P3-CC", 1, "cc.in2p3.fr"), ("GRIF-LAL", 2, "ijclab.in2p3.fr"),
        ("GRIF-IRFU", 2, "datagrid.cea.fr"), ("GRIF-LPNHE", 2, "lpnhe.in2p3.fr"),
        ("IN2P3-LAPP", 2, "lapp.in2p3.fr"), ("IN2P3-CPPM", 2, "cppm.in2p3.fr"),
        ("IN2P3-LPC", 2, "clermont.in2p3.fr"), ("IN2P3-LPSC", 2, "lpsc.in2p3.fr"),
        ("FR-IN2P3-IPHC-T3", 3, "iphc.cnrs.fr"), ("FR-IN2P3-IP2I-T3", 3, "ip2i.in2p3.fr"),
        ("FR-IN2P3-L2IT-T3", 3, "l2it.in2p3.fr"), ("FR-IN2P3-LP2IB-T3", 3, "lp2ib.in2p3.fr"),
    )),
    ("FR", "Romania", (
        ("RO-07-NIPNE", 2, "nipne.ro"), ("RO-14-ITIM", 2, "itim-cj.ro"),
        ("RO-16-UAIC", 2, "uaic.ro"),
    )),
    ("FR", "China", (("BEIJING-LCG2", 2, "ihep.ac.cn"), ("CN-SDU-T3", 3, "sdu.edu.cn"))),
    ("FR", "Japan", (("TOKYO-LCG2", 2, "icepp.jp"), ("JP-KEK-T3", 3, "kek.jp"))),
    ("IT", "Italy", (
        ("INFN-T1", 1, "cr.cnaf.infn.it"), ("INFN-MILANO-ATLASC", 2, "mi.infn.it"),
        ("INFN-NAPOLI-ATLAS", 2, "na.infn.it"), ("INFN-ROMA1", 2, "roma1.infn.it"),
        ("INFN-FRASCATI", 2, "lnf.infn.it"), ("INFN-COSENZA", 3, "cs.infn.it"),
        ("INFN-GENOVA", 3, "ge.infn.it"), ("INFN-LECCE", 3, "le.infn.it"),
        ("INFN-ROMA3", 3, "roma3.infn.it"), ("INFN-TRIESTE", 3, "ts.infn.it"),
        ("INFN-PAVIA", 3, "pv.infn.it"), ("INFN-PISA", 3, "pi.infn.it"),
        ("INFN-BOLOGNA-T3", 3, "bo.infn.it"),
    )),
    ("ND", "Denmark", (("NDGF-T1", 1, "ndgf.org"), ("DK-NBI-T3", 3, "nbi.dk"))),
    ("ND", "Slovenia", (
        ("SiGNET", 2, "ijs.si"), ("ARNES", 2, "arnes.si"), ("SI-UL-T3", 3, "fmf.uni-lj.si"),
    )),
    ("ND", "Norway", (("NO-UIO-T3", 3, "uio.no"),)),
    ("ND", "Sweden", (("SE-LU-T3", 3, "lu.se"), ("SE-UU-T3", 3, "uu.se"))),
    ("ND", "Finland", (("FI-HIP-T3", 3, "hip.fi"),)),
    ("NL", "Netherlands", (
        ("SARA-MATRIX", 1, "grid.surfsara.nl"), ("NIKHEF-ELPROD", 2, "nikhef.nl"),
        ("NL-UVA-T3", 3, "uva.nl"), ("NL-RU-NIJMEGEN-T3", 3, "science.ru.nl"),
    )),
    ("NL", "Israel", (
        ("IL-TAU-HEP", 2, "tau.ac.il"), ("TECHNION-HEP", 2, "technion.ac.il"),
        ("WEIZMANN-LCG2", 2, "weizmann.ac.il"), ("IL-HUJI-T3", 3, "huji.ac.il"),
    )),
    ("NL", "Belgium", (("BE-UCLOUVAIN-T3", 3, "uclouvain.be"),)),
    ("NL", "Greece", (("GR-AUTH-T3", 3, "physics.auth.gr"),)),
    ("UK", "United Kingdom", (
        ("RAL-LCG2", 1, "gridpp.rl.ac.uk stfc.ac.uk"),
        ("UKI-NORTHGRID-MAN-HEP", 2, "hep.manchester.ac.uk"),
        ("UKI-NORTHGRID-LANCS-HEP", 2, "hec.lancs.ac.uk"),
        ("UKI-NORTHGRID-LIV-HEP", 2, "ph.liv.ac.uk"),
        ("UKI-NORTHGRID-SHEF-HEP", 2, "hep.shef.ac.uk"), ("UKI-LT2-QMUL", 2, "ph.qmul.ac.uk"),
        ("UKI-LT2-RHUL", 2, "pp.rhul.ac.uk"), ("UKI-LT2-UCL-HEP", 2, "hep.ucl.ac.uk"),
        ("UKI-LT2-Brunel", 2, "brunel.ac.uk"), ("UKI-LT2-IC-HEP", 2, "hep.ph.ic.ac.uk"),
        ("UKI-SCOTGRID-GLASGOW", 2, "gla.scotgrid.ac.uk"),
        ("UKI-SCOTGRID-ECDF", 2, "ecdf.ed.ac.uk"),
        ("UKI-SCOTGRID-DURHAM", 2, "dur.scotgrid.ac.uk"),
        ("UKI-SOUTHGRID-OX-HEP", 2, "physics.ox.ac.uk"),
        ("UKI-SOUTHGRID-BHAM-HEP", 2, "ph.bham.ac.uk"), ("UKI-SOUTHGRID-SUSX", 2, "sussex.ac.uk"),
        ("UKI-SOUTHGRID-RALPP", 2, "pp.rl.ac.uk"),
        ("UKI-SOUTHGRID-CAM-HEP", 2, "hep.phy.cam.ac.uk"), ("UK-WARWICK-T3", 3, "warwick.ac.uk"),
        ("UK-BRISTOL-T3", 3, "bristol.ac.uk"), ("UK-HUDDERSFIELD-T3", 3, "hud.ac.uk"),
        ("UK-KCL-T3", 3, "kcl.ac.uk"),
    )),
    ("US", "United States", (
        ("BNL-ATLAS", 1, "bnl.gov sdcc.bnl.gov"), ("AGLT2", 2, "aglt2.org umich.edu msu.edu"),
        ("MWT2", 2, "mwt2.org uchicago.edu"), ("NET2", 2, "nese.mghpcc.org umass.edu"),
        ("SWT2_CPB", 2, "atlas-swt2.org"), ("UTA_SWT2", 2, "uta.edu"),
        ("OU_OSCER_ATLAS", 2, "oscer.ou.edu"), ("LUCILLE", 2, "lunet.edu"),
        ("SLACXRD", 2, "slac.stanford.edu"), ("NERSC", 2, "nersc.gov"),
        ("IllinoisHEP", 3, "illinois.edu"), ("US-ANL-HEP-T3", 3, "hep.anl.gov"),
        ("US-UCSC-T3", 3, "ucsc.edu"), ("US-UW-MADISON-T3", 3, "wisc.edu"),
        ("US-DUKE-T3", 3, "duke.edu"), ("US-UTD-T3", 3, "utdallas.edu"),
        ("US-SMU-T3", 3, "smu.edu"), ("US-UCI-T3", 3, "uci.edu"), ("US-NYU-T3", 3, "nyu.edu"),
        ("US-UPENN-T3", 3, "upenn.edu"), ("US-UOREGON-T3", 3, "uoregon.edu"),
        ("US-UW-SEATTLE-T3", 3, "washington.edu"), ("US-BRANDEIS-T3", 3, "brandeis.edu"),
    )),
    ("CA", "Canada", (
        ("TRIUMF-LCG2", 1, "triumf.ca"), ("CA-SFU-T2", 2, "sfu.ca"),
        ("CA-VICTORIA-WESTGRID-T2", 2, "uvic.ca"), ("CA-WATERLOO-T2", 2, "uwaterloo.ca"),
        ("CA-MCGILL-CLUMEQ-T2", 2, "clumeq.mcgill.ca"), ("CA-SCINET-T2", 2, "scinet.utoronto.ca"),
        ("CA-UOFT-T3", 3, "physics.utoronto.ca"), ("CA-CARLETON-T3", 3, "physics.carleton.ca"),
    )),
    ("ES", "Spain", (
        ("pic", 1, "pic.es"), ("IFIC-LCG2", 2, "ific.uv.es"), ("UAM-LCG2", 2, "ft.uam.es"),
        ("IFAE", 2, "ifae.es"), ("ES-UB-T3", 3, "fqa.ub.edu"), ("ES-IFCA-T3", 3, "ifca.es"),
    )),
    ("ES", "Portugal", (
        ("LIP-Coimbra", 2, "coimbra.lip.pt"), ("LIP-Lisbon", 2, "lip.pt"),
        ("NCG-INGRID-PT", 2, "ncg.ingrid.pt"), ("PT-UMINHO-T3", 3, "uminho.pt"),
    )),
    ("ES", "Chile", (("EELA-UTFSM", 2, "usm.cl"),)),
    ("TW", "Taiwan", (
        ("Taiwan-LCG2", 1, "grid.sinica.edu.tw"), ("TW-FTT", 2, "twgrid.org"),
        ("TW-NCU-T3", 3, "ncu.edu.tw"),
    )),
    ("TW", "Australia", (
        ("Australia-ATLAS", 2, "physics.unimelb.edu.au"),
        ("AU-SYDNEY-T3", 3, "physics.usyd.edu.au"),
    )),
    ("RU", "Russia", (
        ("RRC-KI-T1", 1, "t1.grid.kiae.ru"), ("RRC-KI", 2, "grid.kiae.ru"),
        ("RU-Protvino-IHEP", 2, "ihep.su"), ("ru-PNPI", 2, "pnpi.nw.ru"),
        ("JINR-LCG2", 2, "jinr.ru"), ("ITEP", 2, "itep.ru"), ("RU-SINP-MSU-T3", 3, "sinp.msu.ru"),
    )),
)
SITES: tuple[SiteRow, ...] = tuple(
    (name, cloud, tier, country, domains)
    for cloud, country, rows in SITE_GROUPS for name, tier, domains in rows
)

# Big tier-2s that act as task nuclei (all tier-0/1 sites are nuclei anyway).
NUCLEUS_T2 = ("DESY-HH", "LRZ-LMU", "MPPMU", "praguelcg2", "GRIF-LAL", "TOKYO-LCG2",
              "INFN-MILANO-ATLASC", "INFN-NAPOLI-ATLAS", "UKI-NORTHGRID-MAN-HEP",
              "UKI-LT2-QMUL", "UKI-SCOTGRID-GLASGOW", "AGLT2", "MWT2", "SWT2_CPB")

# Non-online sites: one per cloud, never a nucleus, so brokerage tests see
# every status without losing a cloud's main storage.
STATUS_OVERRIDES = {"RO-16-UAIC": "offline", "UKI-LT2-Brunel": "offline",
                    "INFN-COSENZA": "offline", "CA-WATERLOO-T2": "test", "ITEP": "test",
                    "NCG-INGRID-PT": "brokeroff", "TECHNION-HEP": "brokeroff"}

# DATADISKs left with < 0.5 % free space, to exercise space-aware brokerage.
NEARLY_FULL = ("UKI-SOUTHGRID-SUSX_DATADISK", "IN2P3-LPC_DATADISK")

# HPC-like extra queues: (site, nickname, corecount). They set no wall-time
# limit (CRIC's maxtime 0) and move files with mv, as their own CRIC entries say.
HPC_QUEUES = (("NERSC", "NERSC_Perlmutter", 128), ("LRZ-LMU", "LRZ-LMU_MUC", 64),
              ("MPPMU", "MPPMU_RAVEN", 72), ("SiGNET", "SiGNET_VEGA", 128))
MV_ONLY = {"copytools": {"mv": {"setup": ""}},
           "acopytools": {"pr": ["mv"], "pw": ["mv"], "pl": ["mv"]}}

# Sites that are not their own WLCG resource centre (CRIC's rc_site).
RC_SITES = {"CERN-P1": "CERN-PROD"}

# Well-known storage front ends: site -> (disk URL, tape URL).
SE_OVERRIDES = {
    "CERN-PROD": ("root://eosatlas.cern.ch:1094", "root://eosctaatlas.cern.ch:1094"),
    "FZK-LCG2": ("davs://atlaswebdav-kit.gridka.de:2880",
                 "srm://atlassrm-fzk.gridka.de:8443/srm/managerv2?SFN="),
    "BNL-ATLAS": ("davs://dcgftp.usatlas.bnl.gov:443", "https://dcdoor.usatlas.bnl.gov:443"),
}
PERFSONAR_OVERRIDES = {"FZK-LCG2": ("perfsonar-de-kit.gridka.de", "perfsonar-lat.gridka.de")}
SE_PREFIXES = ("se", "dcache", "storage", "atlas-se", "xrootd", "webdav", "dpm", "storm")
PS_STYLES = (("ps-bandwidth", "ps-latency"), ("perfsonar-bw", "perfsonar-lat"), ("psb01", "psl01"))

TAPE_KINDS = ("DATATAPE", "MCTAPE")
PILOT_SLOTS = {0: (1000, 5000), 1: (1000, 5000), 2: (100, 2000), 3: (10, 200)}
MAXTIMES = (86400, 129600, 172800, 259200)
MAXWDIRS = (16000, 20000, 32768, 40000, 48000, 64000)
RSS_PER_CORE = (2000, 2500, 3000, 4000)

# mc23 samples: (DSID, physics short name, evgen tag, formats). A trailing
# "*" on a format also emits that task's log dataset.
MC_SAMPLES = (
    (601229, "PhPy8EG_A14_ttbar_hdamp258p75_SingleLep", "e8514",
     "EVNT HITS AOD PHYS* PHYSLITE"),
    (601230, "PhPy8EG_A14_ttbar_hdamp258p75_dil", "e8514", "PHYS PHYSLITE"),
    (601189, "PhPy8EG_AZNLO_Zee", "e8514", "AOD PHYS"),
    (601190, "PhPy8EG_AZNLO_Zmumu", "e8514", "AOD PHYS PHYSLITE"),
    (700792, "Sh_2214_Wmunu_maxHTpTV2_BFilter", "e8532", "EVNT PHYS"),
    (801172, "Py8EG_A14NNPDF23LO_jj_JZ2", "e8514", "HITS* AOD PHYS"),
    (601352, "PhPy8EG_tW_dyn_DR_incl_antitop", "e8547", "PHYS"),
    (602414, "PhPy8EG_PDF4LHC21_ggH125_ZZ4lep", "e8557", "AOD PHYSLITE"),
)
MC23_TAGS = ("s4162", "r15540", "p6266")
# format -> (production step, file/dataset stem, number of tags in the name)
MC_FORMATS = {"EVNT": ("evgen", "EVNT", 1), "HITS": ("simul", "HITS", 2),
              "AOD": ("recon", "AOD", 3), "PHYS": ("deriv", "DAOD_PHYS", 4),
              "PHYSLITE": ("deriv", "DAOD_PHYSLITE", 4)}
# Real-data runs: (scope, run number, f/m tags, formats); "*" as above.
DATA_RUNS = (
    ("data23_13p6TeV", 455924, "f1350_m2185", "PHYS PHYSLITE"),
    ("data23_13p6TeV", 456714, "f1350_m2185", "RAW AOD PHYS"),
    ("data24_13p6TeV", 473235, "f1450_m2248", "RAW AOD* PHYS PHYSLITE"),
    ("data24_13p6TeV", 482596, "f1450_m2248", "AOD PHYS"),
)
DATA_FORMATS = {"AOD": ("merge", "AOD"), "PHYS": ("deriv", "DAOD_PHYS"),
                "PHYSLITE": ("deriv", "DAOD_PHYSLITE")}
DATA_PTAG = "p6266"
# User analysis outputs: (user, output dataset base, stream, with log dataset).
USER_OUTPUTS = (
    ("jdoe", "ttbar_SingleLep_ntuple.v3", "ANALYSIS.root", True),
    ("jdoe", "Zmumu_calib.v1", "hist-output.root", False),
    ("asmith", "HH4b_resolved.v12", "MiniNtuple.root", True),
    ("asmith", "data24_trigger_eff.v2", "TREE.root", False),
)

GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "netbroker.sample-grid")


class DatasetSpec(NamedTuple):
    scope: str
    name: str
    file_pattern: str  # str.format pattern taking the file number as {n}
    placement: str  # replica policy: mc | data | raw | log | user


def rng_for(*parts: object) -> random.Random:
    # One stream per entity, seeded by its name, so that adding or editing a
    # site or dataset does not reshuffle the values of all the others.
    return random.Random(":".join([SEED, *map(str, parts)]))


def task_id(name: str) -> int:
    # Stable pseudo task id; a log dataset shares its parent task's id.
    return 38_000_000 + zlib.crc32(name.encode()) % 4_000_000


def site_status(site: str) -> str:
    return STATUS_OVERRIDES.get(site, "online")


def check_tables() -> None:
    """Fail loudly on table typos instead of silently dropping records."""
    names = [row[0] for row in SITES]
    if len(set(names)) != len(names):
        raise ValueError("duplicate site name in SITES")
    extra = [*NUCLEUS_T2, *STATUS_OVERRIDES, *SE_OVERRIDES, *PERFSONAR_OVERRIDES,
             *(site for site, _nick, _cores in HPC_QUEUES),
             *(ep.rsplit("_", 1)[0] for ep in NEARLY_FULL)]
    unknown = sorted(set(extra) - set(names))
    if unknown:
        raise ValueError(f"unknown sites referenced: {unknown}")


def build_clouds() -> dict[str, Record]:
    clouds: dict[str, Record] = {}
    for name, cloud, tier, _country, _domains in SITES:
        if tier <= 1:
            if cloud in clouds:
                raise ValueError(f"cloud {cloud} has two tier-0/1 sites")
            clouds[cloud] = {"name": cloud, "tier1": name}
    return clouds


def perfsonar_hosts(site: str, tier: int, domain: str) -> list[str]:
    if site in PERFSONAR_OVERRIDES:
        return list(PERFSONAR_OVERRIDES[site])
    rng = rng_for("perfsonar", site)
    # Many tier-3s run no perfSONAR node at all.
    if tier == 3 and rng.random() < 0.5:
        return []
    bandwidth, latency = rng.choice(PS_STYLES)
    if tier == 3 or rng.random() < 0.3:
        return [f"perfsonar.{domain}"]
    return [f"{bandwidth}.{domain}", f"{latency}.{domain}"]


def build_site(row: SiteRow) -> Record:
    name, cloud, tier, country, domains = row
    domain_list = domains.split()
    nucleus = tier <= 1 or name in NUCLEUS_T2
    return {
        "name": name, "cloud": cloud, "tier_level": tier, "country": country,
        "state": "ACTIVE", "status": site_status(name),
        "datapolicies": ["Nucleus"] if nucleus else [],
        "domains": domain_list,
        "perfsonar_hosts": perfsonar_hosts(name, tier, domain_list[0]),
        "rc_site": RC_SITES.get(name, name),
    }


def storage_urls(site: str, domain: str) -> tuple[str, str]:
    """Return (disk, tape) storage URLs; all disk tokens share one SE."""
    if site in SE_OVERRIDES:
        return SE_OVERRIDES[site]
    rng = rng_for("se", site)
    host = f"{rng.choice(SE_PREFIXES)}.{domain}"
    disk = f"root://{host}:1094" if rng.random() < 0.3 else f"davs://{host}:443"
    if rng.random() < 0.5:
        tape = f"srm://srm-tape.{domain}:8443/srm/managerv2?SFN="
    else:
        tape = f"https://tape.{domain}:443"
    return disk, tape


def endpoint_totals(tier: int, rng: random.Random) -> dict[str, int]:
    """Total space per token in bytes (whole TB, as sites pledge)."""
    datadisk_tb = rng.randint(5000, 20000) if tier <= 1 else rng.randint(500, 5000)
    return {
        "DATADISK": datadisk_tb * TB,
        "SCRATCHDISK": round(datadisk_tb * rng.uniform(0.05, 0.10)) * TB,
        "DATATAPE": rng.randint(20000, 80000) * TB,
        "MCTAPE": rng.randint(20000, 80000) * TB,
        "LOCALGROUPDISK": rng.randint(50, 500) * TB,
    }


def protocol_id(endpoint: str, door: str) -> int:
    # Stable per endpoint and door, as CRIC's ids are stable across dumps.
    return 100_000 + zlib.crc32(f"{endpoint}:{door}".encode()) % 900_000


def flavour(url: str) -> str:
    scheme = url.split("://", 1)[0].rsplit(":", 1)[-1]
    return {"root": "XROOTD", "davs": "WEBDAV", "https": "WEBDAV", "srm": "SRM",
            "file": "POSIX"}.get(scheme, scheme.upper())


def endpoint_protocols(name: str, kind: str, domain: str, door_url: str) -> Record:
    """CRIC's arprotocols and aprotocols of an endpoint.

    Disks: a POSIX mount for the site's own nodes (LAN first choice), the
    storage door for everyone (WAN first choice, LAN second), and the other
    door protocol for reading. Tapes: the door, WAN only.
    """
    path = f"/pnfs/{domain}/atlas/{kind.lower()}/rucio/"
    door = door_url.split("/srm/")[0] if "/srm/" in door_url else door_url
    if kind in TAPE_KINDS:
        door = f"token:ATLAS{kind}:{door_url}" if door_url.startswith("srm") else door
        doors = [(door, {"read_wan": 1, "write_wan": 1, "delete_wan": 1})]
    else:
        scheme, rest = door.split("://", 1)
        host = rest.split(":")[0]
        other = f"root://{host}:1094" if scheme != "root" else f"davs://{host}:443"
        doors = [("file://localhost", {"read_lan": 1, "write_lan": 1, "delete_lan": 1}),
                 (door, {"read_lan": 2, "write_lan": 2, "delete_lan": 2, "read_wan": 1,
                         "write_wan": 1, "delete_wan": 1}),
                 (other, {"read_lan": 3, "read_wan": 2})]
    arprotocols: dict[str, list[tuple[int, Record]]] = {}
    aprotocols: dict[str, list[list[Any]]] = {}
    for url, ranks in doors:
        entry = {"endpoint": url, "path": path, "flavour": flavour(url),
                 "id": protocol_id(name, url)}
        for activity, rank in ranks.items():
            arprotocols.setdefault(activity, []).append((rank, entry))
        for short, op in (("r", "read"), ("w", "write"), ("d", "delete")):
            best = [v for k, v in ranks.items() if k.startswith(op)]
            if best:
                aprotocols.setdefault(short, []).append([url, min(best), path])
    return {"arprotocols": {a: [e for _, e in sorted(v, key=lambda t: t[0])]
                            for a, v in sorted(arprotocols.items())},
            "aprotocols": {k: sorted(v, key=lambda r: r[1]) for k, v in aprotocols.items()}}


def build_endpoints(row: SiteRow) -> list[Record]:
    site, _cloud, tier, _country, domains = row
    rng = rng_for("space", site)
    disk_url, tape_url = storage_urls(site, domains.split()[0])
    totals = endpoint_totals(tier, rng)
    kinds = ("DATADISK", "SCRATCHDISK") + (TAPE_KINDS if tier <= 1 else ())
    endpoints = []
    for kind in ("LOCALGROUPDISK",) if tier == 3 else kinds:
        name = f"{site}_{kind}"
        full = name in NEARLY_FULL
        free_frac = rng.uniform(0.001, 0.004) if full else rng.uniform(0.05, 0.45)
        endpoints.append({
            "name": name, "site": site, "type": kind, "token": f"ATLAS{kind}",
            "is_tape": kind in TAPE_KINDS, "state": "ACTIVE",
            "se": tape_url if kind in TAPE_KINDS else disk_url,
            "space_total_bytes": totals[kind],
            "space_free_bytes": int(totals[kind] * free_frac) // GB * GB,
            **endpoint_protocols(name, kind, domains.split()[0],
                                 tape_url if kind in TAPE_KINDS else disk_url),
        })
    return endpoints


def production_layout(site: str, tier: int, rng: random.Random) -> tuple[str, str, int]:
    """Pick (nickname, type, corecount) of a site's main production queue."""
    if tier <= 1:
        return site, "unified", 8
    if tier == 3:
        return site, rng.choice(("production", "unified")), rng.choice((1, 1, 8))
    style = rng.choice(("plain", "UCORE", "MCORE"))
    if style == "UCORE":
        return f"{site}_UCORE", "unified", 8
    if style == "MCORE":
        return f"{site}_MCORE", "production", 8
    return site, rng.choice(("production", "unified")), rng.choice((1, 8))


def make_queue(nickname: str, row: SiteRow, qtype: str, cores: int,
               astorages: dict[str, list[str]], rng: random.Random) -> Record:
    site, cloud, tier = row[0], row[1], row[2]
    return {
        "nickname": nickname, "panda_resource": nickname, "atlas_site": site,
        "cloud": cloud, "tier_level": tier, "type": qtype,
        # Queues inherit a non-online site status; CRIC-style blacklisting.
        "status": site_status(site),
        "corecount": cores, "corepower": round(rng.uniform(8.0, 18.0), 1),
        "maxrss": cores * rng.choice(RSS_PER_CORE),
        "maxtime": rng.choice(MAXTIMES), "maxwdir": rng.choice(MAXWDIRS),
        "pilot_slots": rng.randint(*PILOT_SLOTS[tier]),
        "astorages": astorages,
    }


def build_queues(row: SiteRow) -> list[Record]:
    site, tier = row[0], row[2]
    rng = rng_for("queues", site)
    disk = f"{site}_LOCALGROUPDISK" if tier == 3 else f"{site}_DATADISK"
    # Every disk of the site is local: its files are read, and written, over the LAN.
    local = [disk] if tier == 3 else [disk, f"{site}_SCRATCHDISK"]
    lan = {"read_lan": local, "write_lan": [disk]}
    nickname, qtype, cores = production_layout(site, tier, rng)
    queues = [make_queue(nickname, row, qtype, cores, lan, rng)]
    if tier <= 1 or (tier == 2 and rng.random() < 0.7):
        # User analysis output goes to the scratch token, not DATADISK.
        analy = {"read_lan": local, "write_lan": [f"{site}_SCRATCHDISK"]}
        queues.append(make_queue(f"ANALY_{site}", row, "analysis",
                                 rng.choice((1, 1, 1, 8)), analy, rng))
    for hpc_site, hpc_nickname, hpc_cores in HPC_QUEUES:
        if hpc_site == site:
            queues.append({**make_queue(hpc_nickname, row, "production", hpc_cores, lan, rng),
                           "maxtime": 0, **MV_ONLY})
    return queues


def build_netroutes() -> dict[str, Record]:
    """One network route per site (CRIC's netroute shape): a /24 and a /48 of its own."""
    routes = {}
    for i, (site, *_rest) in enumerate(SITES):
        routes[f"{site}-LHCONE"] = {
            "rcsite": site, "netsite": f"NET-{site}",
            "networks": {"ipv4": [f"198.{18 + i // 256}.{i % 256}.0/24"],
                         "ipv6": [f"2001:db8:{0xa000 + i:x}::/48"]}}
    return routes


def log_spec(scope: str, base: str, tid: int) -> DatasetSpec:
    name = f"{base}_tid{tid:08d}_00"
    return DatasetSpec(scope, name, f"log.{tid:08d}._{{n:06d}}.job.log.tgz.1", "log")


def production_specs(scope: str, name: str, stem: str, kind: str,
                     log_name: str | None) -> Iterator[DatasetSpec]:
    """A production task's output dataset of ROOT files, and its log dataset where named."""
    tid = task_id(name)
    yield DatasetSpec(scope, name, f"{stem}.{tid:08d}._{{n:06d}}.pool.root.1", kind)
    if log_name is not None:
        yield log_spec(scope, log_name, tid)


def mc_specs() -> Iterator[DatasetSpec]:
    scope = "mc23_13p6TeV"
    for dsid, physics, etag, formats in MC_SAMPLES:
        for fmt in formats.split():
            step, stem, ntags = MC_FORMATS[fmt.rstrip("*")]
            tags = "_".join([etag, *MC23_TAGS][:ntags])
            prefix = f"{scope}.{dsid}.{physics}.{step}"
            yield from production_specs(scope, f"{prefix}.{stem}.{tags}", stem, "mc",
                                        f"{prefix}.log.{tags}" if fmt.endswith("*") else None)


def data_specs() -> Iterator[DatasetSpec]:
    for scope, run, fm_tags, formats in DATA_RUNS:
        prefix = f"{scope}.{run:08d}.physics_Main"
        for fmt in formats.split():
            if fmt == "RAW":
                name = f"{prefix}.daq.RAW"
                sfo = 11 + run % 5
                pattern = name + "._lb{n:04d}._SFO-" + f"{sfo}._0001.data"
                yield DatasetSpec(scope, name, pattern, "raw")
                continue
            step, stem = DATA_FORMATS[fmt.rstrip("*")]
            tags = fm_tags if stem == "AOD" else f"{fm_tags}_{DATA_PTAG}"
            yield from production_specs(scope, f"{prefix}.{step}.{stem}.{tags}", stem, "data",
                                        f"{prefix}.{step}.log.{tags}" if fmt.endswith("*")
                                        else None)


def user_specs() -> Iterator[DatasetSpec]:
    for user, base, stream, with_log in USER_OUTPUTS:
        scope = f"user.{user}"
        tid = task_id(f"{scope}.{base}")
        files = f"{scope}.{tid:08d}._{{n:06d}}"
        yield DatasetSpec(scope, f"{scope}.{base}_{stream}", f"{files}.{stream}", "user")
        if with_log:
            yield DatasetSpec(scope, f"{scope}.{base}.log", f"{files}.log.tgz", "user")


def make_files(spec: DatasetSpec, rng: random.Random) -> list[Record]:
    files = []
    for number in range(1, rng.randint(3, 40) + 1):
        lfn = spec.file_pattern.format(n=number)
        size = rng.randint(500_000_000, 5_000_000_000)
        files.append({
            "name": lfn,
            # Name-based uuid5 keeps GUIDs stable across regenerations.
            "guid": str(uuid.uuid5(GUID_NAMESPACE, f"{spec.scope}:{lfn}")),
            "bytes": size,
            "adler32": f"{zlib.adler32(f'{lfn}:{size}'.encode()):08x}",
        })
    return files


def replica_pools(sites: dict[str, Record], endpoints: dict[str, Record]) -> dict[str, list[str]]:
    """Candidate RSEs per placement role, sorted for deterministic sampling."""
    pools: dict[str, list[str]] = {"nucleus": [], "disk": [], "tape": [], "user": []}
    for name, ep in sorted(endpoints.items()):
        site = sites[ep["site"]]
        if ep["type"] == "DATADISK":
            pools["disk"].append(name)
            if site["datapolicies"] and site["status"] == "online":
                pools["nucleus"].append(name)
        elif ep["type"] == "DATATAPE" and site["tier_level"] == 1:
            pools["tape"].append(name)
        elif ep["type"] in ("SCRATCHDISK", "LOCALGROUPDISK"):
            pools["user"].append(name)
    return pools


def pick(rng: random.Random, pool: list[str], taken: list[str], count: int) -> list[str]:
    return rng.sample([rse for rse in pool if rse not in taken], count)


def place_replicas(spec: DatasetSpec, pools: dict[str, list[str]],
                   rng: random.Random) -> list[str]:
    """Choose 1-4 RSEs: first disk copy at a nucleus (where tasks write)."""
    if spec.placement == "user":
        return pick(rng, pools["user"], [], rng.randint(1, 2))
    if spec.placement == "log":
        return pick(rng, pools["nucleus"], [], 1)
    extra_disk = rng.randint(0, 1) if spec.placement == "raw" else rng.randint(0, 2)
    rses = pick(rng, pools["nucleus"], [], 1)
    rses += pick(rng, pools["disk"], rses, extra_disk)
    if spec.placement == "raw":
        # RAW is archived at the Tier-0 and once more at a Tier-1.
        rses += ["CERN-PROD_DATATAPE", *pick(rng, pools["tape"], rses, 1)]
    elif spec.placement == "data" and rng.random() < 0.4 and len(rses) < 4:
        rses += pick(rng, pools["tape"], rses, 1)
    return rses


def build_datasets(sites: dict[str, Record], endpoints: dict[str, Record]) -> list[Record]:
    pools = replica_pools(sites, endpoints)
    datasets = []
    for spec in (*mc_specs(), *data_specs(), *user_specs()):
        rng = rng_for("dataset", spec.scope, spec.name)
        files = make_files(spec, rng)
        rses = place_replicas(spec, pools, rng)
        # The first copy is the complete original; later ones may be in flight.
        replicas = [{"rse": rse,
                     "state": "PENDING" if i and rng.random() < 0.25 else "AVAILABLE"}
                    for i, rse in enumerate(rses)]
        datasets.append({"scope": spec.scope, "name": spec.name,
                         "files": files, "replicas": replicas})
    return datasets


def build_document() -> Record:
    check_tables()
    sites = {row[0]: build_site(row) for row in SITES}
    endpoints = {ep["name"]: ep for row in SITES for ep in build_endpoints(row)}
    queues = {q["nickname"]: q for row in SITES for q in build_queues(row)}
    return {"cloud": build_clouds(), "site": sites, "ddmendpoint": endpoints,
            "pandaqueue": queues, "netsite": build_netroutes(),
            "dataset": build_datasets(sites, endpoints)}


def main() -> None:
    sys.stdout.write(json.dumps(build_document(), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
