#include "guide_variables.hpp"

#include <fmt/format.h>

namespace synthorg::kernel {

const std::vector<GuideVariableRow>& guide_variable_rows() {
  static const std::vector<GuideVariableRow> rows = {
      {"SYNTHORG_JWT_SECRET", "SynthOrg", "required (the embedded default: `./data/jwt-secret`, made on first start)",
       "Signs and checks session JWTs; at least 32 characters of URL-safe base64, else the start stops saying which "
       "rule it breaks, never echoing it.",
       "AuthStartTest.AMissingOrShortSecretStopsTheStartWithTheFix"},
      {"JWT_SECRET", "PondPilot", "required",
       "Used as `SYNTHORG_JWT_SECRET` when that is unset; ours wins when both are set (logged once).",
       "Cli.ThePondPilotGuidesVariablesAreAcceptedAndOursWin"},
      {"SYNTHORG_SETTINGS_KEY", "SynthOrg", "required once a setting is sensitive",
       "The Fernet key sensitive settings are encrypted with; a malformed key is refused saying what is wrong.",
       "SettingsTest.ASensitiveSettingWithoutAKeyRefusesToStartAndSaysHowToFixIt"},
      {"`<NAME>_FILE`, `/run/secrets/<name>`", "both", "unset",
       "Docker and Kubernetes secrets for `SYNTHORG_JWT_SECRET`, `SYNTHORG_SETTINGS_KEY`, `SYNTHORG_DATABASE_URL` "
       "(and `jwt_secret`); a file others may read is warned about.",
       "Cli.SecretsAreReadFromFilesAsDockerAndKubernetesHandThemOver"},
      {"SYNTHORG_DB_PATH", "SynthOrg", "`/data/synthorg.db` (image), `./data/synthorg.db` (embedded default)",
       "The SQLite file; wins over `plugins.store-sqlite.config.path`.", "SqliteStoreTest.DbPathFromTheEnvironmentWinsOverTheConfig"},
      {"SYNTHORG_PERSISTENCE_BACKEND", "SynthOrg", "`sqlite`",
       "`sqlite` or `postgres` picks the store; `SYNTHORG_DATABASE_URL` still wins; anything else stops the start.",
       "CompanyConfig.PersistenceBackendPicksTheStoreAndTheDatabaseUrlStillWins"},
      {"SYNTHORG_DATABASE_URL", "SynthOrg", "unset (SQLite)",
       "Selects store-postgres with this URL whatever else says; its password never appears in logs.",
       "PostgresTest.TheEnvironmentUrlWinsAndItsPasswordIsDecoded"},
      {"SYNTHORG_POSTGRES_SSL_MODE", "SynthOrg", "`require`", "`disable`, `require`, `verify-ca`, `verify-full`; "
       "anything else is refused naming the four.", "PostgresTest.AnUnknownSslModeIsRefusedWithTheValidOnes"},
      {"SYNTHORG_LOG_LEVEL", "SynthOrg", "`info`", "`trace`, `debug`, `info`, `warn`/`warning`, `error`, `critical`, "
       "`off`; anything else stops the start.", "LogTest.EnvironmentChoosesLevelAndFormatAndRefusesNonsense"},
      {"SYNTHORG_LOG_DIR", "SynthOrg", "`/data/logs` (image, compose), `/var/lib/synthorg/logs` (.deb)",
       "Also writes `synthorg.log` there, rotated at 10 MiB, 5 kept; an unusable directory is a clear error.",
       "LogTest.UnusableLogDirectoryIsAClearError"},
      {"SYNTHORG_CONFIG_PATH", "SynthOrg", "`./company.yaml`, else the embedded default",
       "The configuration file when `--config` is not given; an unreadable one stops the start naming it.",
       "CompanyConfig.FileChoiceAndDatabaseUrlOverride"},
      {"`SYNTHORG_<NAMESPACE>_<KEY>`", "SynthOrg", "unset",
       "Pins a runtime setting over the database, `company.yaml` and the default; a bad value stops the start naming "
       "the variable.",
       "SettingsTest.BadEnvironmentAndConfigValuesStopTheStartNamingTheSource"},
      {"SYNTHORG_API_CORS_ALLOWED_ORIGINS", "SynthOrg", "`[]` (no cross-origin access)",
       "The setting `api.cors_allowed_origins`: exact origins (JSON array or comma-separated), `*` without "
       "credentials; preflights answered or refused naming what is not allowed.",
       "CorsTest.AnOriginThatIsNotOneIsRefusedAtStartNamingTheVariable"},
      {"BACKEND_PORT", "SynthOrg", "`3001`", "The API's host port in compose.", "package.compose"},
      {"WEB_PORT", "SynthOrg", "`3000`", "The dashboard's host port in compose.", "package.compose"},
      {"SYNTHORG_IMAGE_TAG", "SynthOrg", "`latest`", "The image tag compose runs (`SYNTHORG_IMAGE_REPOSITORY` the "
       "repository).", "package.compose"},
      {"`DEPLOYMENT_ENV` (build argument)", "SynthOrg", "`dev`",
       "Baked into the image as `SYNTHORG_TELEMETRY_ENV_BAKED` by `build-image`, from the release tag: release → "
       "`prod`, `-dev.N`/`-rc.*`/`-alpha.*`/`-beta.*` → `pre-release`, else `dev`.",
       "package.deployment_env"},
      {"SYNTHORG_TELEMETRY_ENABLED", "SynthOrg", "off",
       "Anonymous product telemetry: `true`/`1`/`yes` on, `false`/`0`/`no` off, anything else stops the start.",
       "TelemetryStartTest.BadEnvironmentStopsStartUpWithTheReason"},
      {"SYNTHORG_TELEMETRY_ENV", "SynthOrg", "unset", "Product telemetry's environment tag; always wins the chain.",
       "TelemetryOptionsTest.EnvironmentTagChainCaseByCase"},
      {"`CI`, `GITLAB_CI`, `BUILDKITE`, `JENKINS_URL`, `RUNPOD_*`", "SynthOrg", "unset",
       "Any of them makes the environment tag `ci` (after `SYNTHORG_TELEMETRY_ENV`).",
       "TelemetryOptionsTest.EnvironmentTagChainCaseByCase"},
      {"SYNTHORG_TELEMETRY_ENV_BAKED", "SynthOrg", "set by the image (`dev` locally)",
       "The environment tag when neither of the above says.", "TelemetryOptionsTest.EnvironmentTagChainCaseByCase"},
      {"SYNTHORG_TRACE_OTLP_ENDPOINT", "SynthOrg", "unset (no tracing)",
       "OTLP/HTTP traces of every request, store call and bus delivery go there.",
       "OtlpTest.ARequestThroughTheApiYieldsACorrectTrace"},
      {"SYNTHORG_TRACE_SERVICE_NAME", "SynthOrg", "`synthorg`", "`service.name` of every span; at most 128 printable "
       "characters.", "TelemetryOptionsTest.TracingIsOffWithoutAnEndpoint"},
      {"SYNTHORG_TRACE_SAMPLING_RATIO", "SynthOrg", "`1.0`", "Root spans sampled, 0 to 1 (children follow their "
       "parent); outside that the start stops.", "TelemetryOptionsTest.SamplingRatioOutsideZeroToOneIsRefused"},
      {"DOCKER_HOST", "SynthOrg", "`unix:///var/run/docker.sock`",
       "The engine orchestrator-docker talks to (and `select.orchestrator: auto` probes); an engine that is down "
       "answers 503, the server stays up.",
       "WorkloadsTest.AnUnreachableOrchestratorIs503AndDoesNotKeepTheKernelDown"},
      {"SYNTHORG_FINE_TUNE_IMAGE", "SynthOrg", "the variant's image", "The fine-tune stage image, over "
       "`gpu_image`/`cpu_image`.", "FineTuneTest.AFullRunCompletesEveryStageInAHardenedContainer"},
      {"SYNTHORG_FINE_TUNE_HEALTH_PORT", "SynthOrg", "`15002`",
       "The stages' health port: given to each stage and probed there; not a port → the start stops.",
       "FineTuneTest.TheGuidesArtifactDirMayNameAVolumeAndItsHealthPortIsTheStagesPort"},
      {"SYNTHORG_ARTIFACT_DIR", "SynthOrg", "unset: no data directory (see docs/fine-tune.md)",
       "Fine-tune's data and outputs: a host path or a volume name, mounted in every stage.",
       "FineTuneTest.TheGuidesArtifactDirMayNameAVolumeAndItsHealthPortIsTheStagesPort"},
      {"PORT", "PondPilot", "`8080` there; `3001` here",
       "Used as `SYNTHORG_HTTP_PORT` when that is unset; ours wins when both are set.",
       "Cli.ThePondPilotGuidesVariablesAreAcceptedAndOursWin"},
      {"GRPC_PORT", "PondPilot", "`8081`",
       "The Flight SQL gateway's port when `SYNTHORG_GRPC_PORT` is unset; ours wins.",
       "Cli.ThePondPilotGuidesVariablesAreAcceptedAndOursWin"},
      {"CONTAINER_IMAGE", "PondPilot", "`synthorg/flightsql-duckdb:latest`", "Each user's workload image.",
       "CompanyConfig.ThePondPilotContainerVariablesReachTheWorkloadsOfEveryShippedConfig"},
      {"CONTAINER_MEMORY_LIMIT", "PondPilot", "`512m` (image), `2g` (embedded default)", "Each workload's memory "
       "limit.", "CompanyConfig.ThePondPilotContainerVariablesReachTheWorkloadsOfEveryShippedConfig"},
      {"CONTAINER_CPU_LIMIT", "PondPilot", "`0.5`", "Each workload's CPUs.",
       "CompanyConfig.ThePondPilotContainerVariablesReachTheWorkloadsOfEveryShippedConfig"},
      {"CONTAINER_NETWORK", "PondPilot", "the engine's default", "The network workloads join.",
       "CompanyConfig.ThePondPilotContainerVariablesReachTheWorkloadsOfEveryShippedConfig"},
      {"CONTAINER_IDLE_TIMEOUT", "PondPilot", "`300000` (5 min)", "Milliseconds an unused workload lives; wins over "
       "`idle_timeout`; not a number of at least 1000 → the start stops.", "WorkloadsTest.IdleWorkloadsAreReaped"},
      {"DATABASE_URL", "PondPilot", "unset", "Copied into every workload (the databases users query; "
       "`workloads.pass_env`); never used by the server itself.", "WorkloadsTest.HardeningIsWhatTheEngineApplied"},
      {"SYNTHORG_NATS_URL", "SynthOrg", "`nats://localhost:4222`",
       "Not read yet: the NATS JetStream bus bridge (several replicas) is not in this release; `synthorg doctor` "
       "says so when it is set.",
       "DoctorTest.TheGuidesVariablesWithNoCounterpartHereAreNamed", true},
      {"SYNTHORG_NATS_STREAM_PREFIX", "SynthOrg", "`SYNTHORG`", "Not read yet, as `SYNTHORG_NATS_URL`.",
       "DoctorTest.TheGuidesVariablesWithNoCounterpartHereAreNamed", true},
      {"SYNTHORG_MEMORY_DIR", "SynthOrg", "`/data/memory`", "Ignored: SynthOrg's agent memory has no counterpart here.",
       "DoctorTest.TheGuidesVariablesWithNoCounterpartHereAreNamed", true},
      {"SYNTHORG_MEMORY_BACKEND", "SynthOrg", "`mem0`", "Ignored, as `SYNTHORG_MEMORY_DIR`.",
       "DoctorTest.TheGuidesVariablesWithNoCounterpartHereAreNamed", true},
      {"MEM0_TELEMETRY", "SynthOrg", "`false`", "Ignored: there is no Mem0 here.",
       "DoctorTest.TheGuidesVariablesWithNoCounterpartHereAreNamed", true},
      {"SYNTHORG_WORKERS", "SynthOrg", "from config", "Ignored: there is no separate worker process here.",
       "DoctorTest.TheGuidesVariablesWithNoCounterpartHereAreNamed", true},
      {"CLAUDE_API_KEY", "PondPilot", "unset", "Ignored: there is no AI integration here; doctor warns that a key sits "
       "unused in the environment.",
       "DoctorTest.TheGuidesVariablesWithNoCounterpartHereAreNamed", true},
      {"OPENAI_API_KEY", "PondPilot", "unset", "Ignored, as `CLAUDE_API_KEY`.",
       "DoctorTest.TheGuidesVariablesWithNoCounterpartHereAreNamed", true},
  };
  return rows;
}

std::string guide_variables_markdown() {
  std::string out = "| variable | guide | default | what this server does | test |\n|---|---|---|---|---|\n";
  for (const auto& row : guide_variable_rows()) {
    auto name = row.name.starts_with('`') ? std::string(row.name) : fmt::format("`{}`", row.name);
    out += fmt::format("| {} | {} | {} | {} | `{}` |\n", name, row.guide, row.default_, row.behaviour, row.test);
  }
  return out;
}

}  // namespace synthorg::kernel
