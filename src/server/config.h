// bastion.toml: what `bastion init` writes and every other command reads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "audit/syslog_forwarder.h"
#include "bastion/auth/auth_service.h"
#include "bastion/common/status.h"
#include "bastion/service/archive.h"

namespace bastion::server {

struct Listen {
  std::string address;  // explicit bind address, e.g. 127.0.0.1 or ::1
  uint16_t port = 0;    // 0: an ephemeral port (tests); the bound port is written to `port_file`
};

struct Config {
  std::string path;       // the file this was read from
  std::string data_dir;   // blobs, index, audit log
  std::string key_file;   // KEK (mode 0600, outside data_dir)
  std::string tls_ca, tls_cert, tls_key;
  std::string ae_title = "BASTION";
  Listen tls_listen{"127.0.0.1", 2762};
  bool plain_enabled = false;
  Listen plain_listen;
  std::vector<std::string> plain_allow;  // CIDRs allowed on the plaintext listener
  std::string port_file;                 // if set, serve writes "tls=<port>\nplain=<port>\nhttps=<port>\n" here
  bool https_enabled = false;            // [http]: the HTTPS API (login, DICOMweb); same certificate as DICOM
  Listen https_listen{"127.0.0.1", 8443};
  std::string https_base_url;            // public base URL for RetrieveURLs ("" = relative)
  uint64_t https_max_body = 4ull << 30;
  size_t https_max_connections = 64;
  // Request-rate limits (token buckets): per source address and per user.
  double https_rate_per_s = 1000, https_rate_burst = 2000;
  double https_user_rate_per_s = 1000, https_user_rate_burst = 2000;
  int max_associations = 64;
  int max_associations_per_node = 16;
  uint32_t max_pdu = 131072;
  int artim_timeout_s = 10;
  int idle_timeout_s = 120;
  int max_failed_associations = 20;  // per source address within failure_window_s, then blocked for block_s
  int failure_window_s = 60;
  int block_s = 60;
  ArchiveLimits limits;
  AuthConfig auth;  // [auth]: passwords, sessions, throttling, identity provider
  // [codec]: the sandboxed decoder processes (R20) for compressed images.
  int codec_workers = 2;
  int codec_memory_mb = 2048;
  int codec_timeout_s = 30;
  int retention_days = 0;  // [retention] days: studies younger than this cannot be deleted
  // [audit]: checkpoint cadence, the site named in exported messages, and
  // [[audit.syslog]] collectors (RFC 5425, mutual TLS).
  audit::AuditStoreOptions audit_options;  // checkpoint_every, checkpoint_interval_s
  std::string audit_site;
  std::vector<audit::SyslogCollector> syslog;

  std::string indexPath() const { return data_dir + "/index.sqlite"; }
  std::string blobRoot() const { return data_dir + "/blobs"; }
  std::string auditPath() const { return data_dir + "/audit.sqlite"; }
  // Who writes the trail, as exported messages name it: the AE title, the
  // [audit] site and this host's name.
  audit::AuditSource auditSource() const;
};

// Reads and validates a config file. Relative paths are taken relative to
// the config file's directory.
StatusOr<Config> loadConfig(const std::string& path);
// The text of a config file for the given settings (what init writes).
std::string renderConfig(const Config& c);

}  // namespace bastion::server
