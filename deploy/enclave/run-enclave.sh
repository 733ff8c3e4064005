#!/usr/bin/env bash
# Start (or stop) the sealgate enclave with nitro-cli. Run by
# deploy/systemd/sealgate-enclave.service; usable by hand as root.
#
#   run-enclave.sh [--debug-mode]     start the enclave from $EIF_PATH
#   run-enclave.sh --stop             terminate it
#
# Settings (environment, e.g. from /etc/sealgate/enclave.env):
#   EIF_PATH      the EIF built by `make eif`     (default /opt/sealgate/sealgate-enclave.eif)
#   CPU_COUNT     vCPUs given to the enclave       (default 2; must be whole cores)
#   MEMORY_MIB    enclave memory in MiB            (default 1024)
#   ENCLAVE_CID   the enclave's vsock CID          (default 16; the host connects to
#                 vsock:$ENCLAVE_CID:5000, see sealgate.service)
#   ENCLAVE_NAME  nitro-cli enclave name           (default sealgate)
#
# CPU_COUNT and MEMORY_MIB must fit in what nitro-enclaves-allocator.service reserved
# (/etc/nitro_enclaves/allocator.yaml: cpu_count, memory_mib).
#
# --debug-mode exposes the enclave console (nitro-cli console) and makes every PCR in
# its attestation documents all zeros, so KMS refuses it under the PCR0-pinned key
# policy and auditors must reject it. Use it only while debugging, never in production.
set -euo pipefail

EIF_PATH="${EIF_PATH:-/opt/sealgate/sealgate-enclave.eif}"
CPU_COUNT="${CPU_COUNT:-2}"
MEMORY_MIB="${MEMORY_MIB:-1024}"
ENCLAVE_CID="${ENCLAVE_CID:-16}"
ENCLAVE_NAME="${ENCLAVE_NAME:-sealgate}"

usage() {
    echo "usage: $0 [--debug-mode | --stop]" >&2
    exit 2
}

debug=0
stop=0
for arg in "$@"; do
    case "${arg}" in
        --debug-mode) debug=1 ;;
        --stop) stop=1 ;;
        -h | --help) usage ;;
        *)
            echo "unknown argument: ${arg}" >&2
            usage
            ;;
    esac
done

if ! command -v nitro-cli >/dev/null 2>&1; then
    echo "nitro-cli not found: install aws-nitro-enclaves-cli (see deploy/README.md)" >&2
    exit 1
fi

if [[ ${stop} -eq 1 ]]; then
    # Idempotent: succeed when no such enclave is running.
    if nitro-cli describe-enclaves | grep -q "\"EnclaveName\": \"${ENCLAVE_NAME}\""; then
        nitro-cli terminate-enclave --enclave-name "${ENCLAVE_NAME}"
    fi
    exit 0
fi

if [[ ! -r "${EIF_PATH}" ]]; then
    echo "EIF not found: ${EIF_PATH} (build it with \`make eif\` and copy it here)" >&2
    exit 1
fi

args=(
    run-enclave
    --enclave-name "${ENCLAVE_NAME}"
    --eif-path "${EIF_PATH}"
    --cpu-count "${CPU_COUNT}"
    --memory "${MEMORY_MIB}"
    --enclave-cid "${ENCLAVE_CID}"
)
if [[ ${debug} -eq 1 ]]; then
    echo "WARNING: debug mode: PCRs read as zeros, KMS will refuse this enclave" >&2
    args+=(--debug-mode)
fi

echo "starting enclave ${ENCLAVE_NAME}: ${EIF_PATH}, ${CPU_COUNT} vCPUs, ${MEMORY_MIB} MiB, CID ${ENCLAVE_CID}"
exec nitro-cli "${args[@]}"
