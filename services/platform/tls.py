"""TLS for the services and their clients: server credentials, channel credentials, a self-signed kit.

Servers read a certificate chain and its private key (PEM files) and, for mutual TLS, a bundle of the
CAs whose client certificates they accept; clients read the CA bundle they trust the server by and,
for mutual TLS, their own certificate and key. Every value is a file path, from the environment or
from arguments:

    server  SKINGENBENCH_TLS_CERT, SKINGENBENCH_TLS_KEY   (both or neither; TLS on when set)
            SKINGENBENCH_TLS_CLIENT_CA                     (mutual TLS: client certificates required)
    client  SKINGENBENCH_TLS_CA                            (TLS on when set)
            SKINGENBENCH_TLS_CLIENT_CERT, SKINGENBENCH_TLS_CLIENT_KEY   (mutual TLS; both or neither)
            SKINGENBENCH_TLS_SERVER_NAME                   (the name to verify, when it is not the target's)

Misconfiguration is refused before anything listens or connects (``TlsConfigError``), with a message
naming the variable and the file: half a key pair, a file that cannot be read, a file with no PEM
block. ``self_signed`` makes a private CA, a server certificate and a client certificate (RFC 5280
profiles) with the ``cryptography`` package; the tests and ``skingenbench tls self-signed`` use it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from skingenbench.services.core.errors import FailedPrecondition

SERVER_ENV = ("SKINGENBENCH_TLS_CERT", "SKINGENBENCH_TLS_KEY", "SKINGENBENCH_TLS_CLIENT_CA")
CLIENT_ENV = (
    "SKINGENBENCH_TLS_CA",
    "SKINGENBENCH_TLS_CLIENT_CERT",
    "SKINGENBENCH_TLS_CLIENT_KEY",
    "SKINGENBENCH_TLS_SERVER_NAME",
)


class TlsConfigError(FailedPrecondition):
    """TLS settings that cannot work (half a key pair, an unreadable or non-PEM file)."""


def _read_pem(path: str, variable: str, *, private_key: bool = False) -> bytes:
    """The bytes of a PEM file, or a TlsConfigError naming the setting and the file (never its contents)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(
            f"{variable}={path}: cannot read the file ({exc.strerror or exc})",
            hint="give a readable PEM file",
        ) from None
    marker = b"PRIVATE KEY-----" if private_key else b"-----BEGIN CERTIFICATE-----"
    if marker not in data:
        what = "PEM private key" if private_key else "PEM certificate"
        raise TlsConfigError(f"{variable}={path}: the file holds no {what}", hint="give a PEM file")
    return data


def _pair(cert: str, key: str, cert_var: str, key_var: str) -> tuple[bytes, bytes] | None:
    if not cert and not key:
        return None
    if not cert or not key:
        given, missing = (cert_var, key_var) if cert else (key_var, cert_var)
        raise TlsConfigError(
            f"{given} is set but {missing} is not",
            hint="a certificate needs its private key: set both or neither",
        )
    return _read_pem(key, key_var, private_key=True), _read_pem(cert, cert_var)


# -- server ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerTls:
    """A server's TLS files (paths); all empty: no TLS."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.key or self.client_ca)

    def credentials(self) -> grpc.ServerCredentials | None:
        """``grpc.ssl_server_credentials`` from the files (None without TLS); raises TlsConfigError.

        With a client CA the server requires and verifies a client certificate on every connection
        (mutual TLS, RFC 8446 section 4.3.2 CertificateRequest)."""
        if not self.enabled:
            return None
        pair = _pair(self.cert, self.key, "SKINGENBENCH_TLS_CERT", "SKINGENBENCH_TLS_KEY")
        if pair is None:
            raise TlsConfigError(
                "SKINGENBENCH_TLS_CLIENT_CA is set but SKINGENBENCH_TLS_CERT and SKINGENBENCH_TLS_KEY are not",
                hint="mutual TLS needs the server's own certificate and key",
            )
        client_ca = _read_pem(self.client_ca, "SKINGENBENCH_TLS_CLIENT_CA") if self.client_ca else None
        credentials = grpc.ssl_server_credentials(
            [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
        )
        _check_usable(credentials)
        return credentials


def _check_usable(credentials: grpc.ServerCredentials) -> None:
    """Bind the credentials on an ephemeral loopback port and let go: gRPC checks the key pair only when
    a port is bound, and its failure there reads like a busy port. A key that does not match its
    certificate, or a PEM block that does not parse, is named here instead."""
    from concurrent.futures import ThreadPoolExecutor

    probe = grpc.server(ThreadPoolExecutor(max_workers=1))
    try:
        probe.add_secure_port("127.0.0.1:0", credentials)
    except RuntimeError:
        raise TlsConfigError(
            "SKINGENBENCH_TLS_CERT and SKINGENBENCH_TLS_KEY do not make a usable key pair",
            hint="the key must be the certificate's, both PEM that parses (or a bad SKINGENBENCH_TLS_CLIENT_CA)",
        ) from None
    finally:
        probe.stop(0)


# -- client ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientTls:
    """What a client trusts a server by (a CA bundle) and, for mutual TLS, its own certificate and key.

    All paths; ``ca`` empty means an insecure channel. ``server_name`` overrides the name the server's
    certificate is checked against (default: the target's host)."""

    ca: str = ""
    cert: str = ""
    key: str = ""
    server_name: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.ca)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientTls:
        env = os.environ if env is None else env
        return cls(*(env.get(name, "") for name in CLIENT_ENV))

    @classmethod
    def resolve(
        cls,
        tls: ClientTls | None = None,
        *,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ClientTls:
        """``tls`` if given, else the environment's settings with any argument given taking precedence."""
        if tls is not None:
            return tls
        base = cls.from_env(env)
        return cls(
            base.ca if ca is None else ca,
            base.cert if cert is None else cert,
            base.key if key is None else key,
            base.server_name,
        )

    def credentials(self) -> grpc.ChannelCredentials | None:
        """``grpc.ssl_channel_credentials`` (None without a CA); raises TlsConfigError."""
        pair = _pair(self.cert, self.key, "SKINGENBENCH_TLS_CLIENT_CERT", "SKINGENBENCH_TLS_CLIENT_KEY")
        if not self.enabled:
            if pair is not None:
                raise TlsConfigError(
                    "a client certificate is set but SKINGENBENCH_TLS_CA is not",
                    hint="mutual TLS runs over TLS: give the CA bundle that signed the server's certificate",
                )
            return None
        key, cert = pair if pair is not None else (None, None)
        return grpc.ssl_channel_credentials(
            root_certificates=_read_pem(self.ca, "SKINGENBENCH_TLS_CA"),
            private_key=key,
            certificate_chain=cert,
        )

    def channel_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def secure_or_insecure_channel(
    target: str, tls: ClientTls, options: Sequence[tuple[str, object]] = ()
) -> grpc.Channel:
    """A secure channel when ``tls`` has a CA, an insecure one otherwise."""
    credentials = tls.credentials()
    if credentials is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, credentials, options=[*options, *tls.channel_options()])


# -- a self-signed kit -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfSignedKit:
    """Paths of the files ``self_signed`` wrote."""

    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server(self, client_ca: bool = False) -> ServerTls:
        return ServerTls(str(self.server_cert), str(self.server_key), str(self.ca) if client_ca else "")

    def client(self, with_cert: bool = False) -> ClientTls:
        if with_cert:
            return ClientTls(str(self.ca), str(self.client_cert), str(self.client_key))
        return ClientTls(str(self.ca))


def self_signed(
    out: str | os.PathLike[str],
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    days: int = 365,
    name: str = "SkinGenBench",
) -> SelfSignedKit:
    """Write a private CA, a server certificate for ``hosts`` and a client certificate into ``out``.

    Profiles follow RFC 5280: the CA has basicConstraints cA=TRUE (critical, pathLen 0) and keyUsage
    keyCertSign/cRLSign (4.2.1.9, 4.2.1.3); the leaves have cA=FALSE, keyUsage digitalSignature,
    extKeyUsage serverAuth or clientAuth (4.2.1.12), subject/authority key identifiers (4.2.1.1-2);
    the server's names are in subjectAltName, DNS names and IP addresses (4.2.1.6), which is what TLS
    clients check (RFC 6125). Keys are ECDSA P-256, written 0600; the CA key is kept so more
    certificates can be signed, and should not be copied to the servers."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=days)

    def subject(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def key_usage(**kw: bool) -> x509.KeyUsage:
        flags = dict.fromkeys(
            (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        return x509.KeyUsage(**{**flags, **kw})

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = subject(f"{name} private CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, usage: x509.ObjectIdentifier, names: Sequence[str] = ()):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject(common_name))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(host) for host in names]), critical=False
            )
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server_cert = leaf(hosts[0] if hosts else "server", ExtendedKeyUsageOID.SERVER_AUTH, hosts)
    client_key, client_cert = leaf(f"{name} client", ExtendedKeyUsageOID.CLIENT_AUTH)

    def write(path: Path, data: bytes, secret: bool = False) -> Path:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        return path

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def pem_cert(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    return SelfSignedKit(
        ca=write(folder / "ca.pem", pem_cert(ca_cert)),
        ca_key=write(folder / "ca-key.pem", pem_key(ca_key), secret=True),
        server_cert=write(folder / "server.pem", pem_cert(server_cert)),
        server_key=write(folder / "server-key.pem", pem_key(server_key), secret=True),
        client_cert=write(folder / "client.pem", pem_cert(client_cert)),
        client_key=write(folder / "client-key.pem", pem_key(client_key), secret=True),
    )


def _general_name(host: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
