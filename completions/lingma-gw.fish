# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_lingma_gw_global_optspecs
    string join \n config= v/verbose q/quiet log-format= h/help V/version
end

function __fish_lingma_gw_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_lingma_gw_global_optspecs) -- $cmd 2>/dev/null
    # lingma-gw: a top-level option still waiting for its value is no subcommand
    or return 0
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_lingma_gw_using_subcommand
    set -l cmd (__fish_lingma_gw_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "serve" -d 'Run the OpenAI-compatible HTTP gateway in front of a pool of Lingma processes'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "models" -d 'List the models Lingma offers'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "chat" -d 'Ask Lingma one question and stream the answer to stdout'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "probe" -d 'Diagnose the setup step by step (binary, work dir, start, login, models, a chat)'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "login" -d 'Log a Lingma instance in (browser, pasted callback URL, or headless Chromium)'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "session" -d 'Move a logged-in session between machines: export and import bundles'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "export" -d 'Write a bundle of a logged-in instance\'s login files (`session export`)'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "import" -d 'Install a bundle into an instance\'s work dir (`session import`)'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "man" -d 'Print the man page (roff) or a subcommand\'s, or write them all with --out-dir'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "sim" -d 'The built-in Lingma simulator (same command line as the Lingma binary)'
complete -c lingma-gw -n "__fish_lingma_gw_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l lingma-bin -d 'The Lingma binary [env: LINGMA_BIN] [default: newest ~/.lingma/bin/<version>/<platform>/Lingma]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l work-dir -d 'Root of the instances\' work dirs; an instance\'s is <work-dir>/<name> [env: LINGMA_WORK_DIR] [default: $XDG_DATA_HOME/lingma-gw/instances]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l startup-timeout -d 'Seconds a Lingma instance has to start and answer `initialize` [env: LINGMA_STARTUP_TIMEOUT] [default: 30]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l first-token-timeout -d 'Seconds to wait for the first token of an answer, and between two tokens [env: LINGMA_FIRST_TOKEN_TIMEOUT] [default: 120]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l attach -d 'Use a Lingma that is already running (an IDE\'s) instead of starting one: `auto` finds it through its info file or socket; or an info file, a Unix socket, a ws:// URL. It is never started, stopped or logged in or out [env: LINGMA_ATTACH]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l lingma-dialect -d 'The dialect to speak: chat/ask (legacy, the plugin runtime) or session/* (acp, the desktop IDE\'s runtime); auto tries session/new once [env: LINGMA_DIALECT] [default: auto]' -r -f -a "auto\t''
legacy\t''
acp\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l host -d 'Address to bind [env: GATEWAY_HOST] [default: 127.0.0.1]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l port -d 'Port to bind; 0 picks a free one [env: GATEWAY_PORT] [default: 8000]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l instances -d 'Number of Lingma instances to start, beside an --attach one [env: INSTANCE_COUNT] [default: 1, or 0 with --attach]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l socket-port -d 'First socket port tried for the instances (their HTTP port is socket + 500) [env: LINGMA_SOCKET_PORT] [default: any free port]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l connections-per-instance -d 'WebSocket connections, so concurrent chats, per instance [env: LINGMA_CONNECTIONS_PER_INSTANCE] [default: 4]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l health-interval -d 'Seconds between two health checks of an instance [env: LINGMA_HEALTH_INTERVAL] [default: 5]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l api-key -d 'Client API key for /v1 (repeat for several) [env: API_KEYS, comma-separated]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l admin-token -d 'Token for the /internal admin endpoints [env: ADMIN_TOKEN] [default: the API keys]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l metrics-token -d 'Token for /metrics [env: METRICS_TOKEN]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l max-in-flight -d 'Chats answered at once; more wait in the queue [env: GATEWAY_MAX_IN_FLIGHT] [default: connections per instance × instances (an --attach runtime counts as one)]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l queue-timeout -d 'Seconds a chat may wait for a slot before 429 [env: GATEWAY_QUEUE_TIMEOUT_SEC] [default: 30]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l session-cache-max-entries -d 'Conversations remembered for reuse [env: SESSION_CACHE_MAX_ENTRIES] [default: 10000]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l session-cache-ttl -d 'Seconds a conversation is remembered for reuse [env: SESSION_CACHE_TTL_SEC] [default: 3600]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l default-model -d 'Model used when a request names none or an unknown one [env: DEFAULT_MODEL] [default: Lingma\'s default]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l ask-mode -d 'How questions are asked [env: DEFAULT_ASK_MODE] [default: chat]' -r -f -a "chat\t''
agent\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l accounts -d 'Accounts file (JSON list) or inline JSON assigning accounts to instances [env: LINGMA_ACCOUNTS]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l session-bundle -d 'Session bundle (file, or base64 text) or seed directory for work dirs that are not logged in [env: LINGMA_SESSION_BUNDLE]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l shutdown-grace -d 'Seconds to let running answers finish on shutdown [env: GATEWAY_SHUTDOWN_GRACE_SEC] [default: 10]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l max-queue -d 'Requests waiting for a slot; beyond that 429 at once [env: GATEWAY_MAX_QUEUE] [default: 4 × max-in-flight]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l queue-memory -d 'MiB of request bodies that may be read or wait for a slot at once; beyond that 429 [env: GATEWAY_QUEUE_MEMORY_MB] [default: 64]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l body-limit -d 'Largest request body in bytes [env: GATEWAY_BODY_LIMIT] [default: 10485760]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l header-timeout -d 'Seconds from the first byte of a request\'s headers to their end [env: GATEWAY_HEADER_TIMEOUT_SEC] [default: 10]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l body-timeout -d 'Seconds to receive a whole request body (else 408) [env: GATEWAY_BODY_TIMEOUT_SEC] [default: 30]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l idle-timeout -d 'Seconds an idle keep-alive connection stays open [env: GATEWAY_IDLE_TIMEOUT_SEC] [default: 60]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l stream-stall-timeout -d 'Seconds a client may stop reading an answer before it is ended and Lingma stopped [env: GATEWAY_STREAM_STALL_TIMEOUT_SEC] [default: 60]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l keepalive -d 'Seconds of silence after which a stream gets a keep-alive (SSE comment, Anthropic ping); 0 turns them off [env: GATEWAY_SSE_KEEPALIVE_SEC] [default: 15]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l tool-syntax -d 'The syntax the model is asked to write tool calls in; every syntax is understood [env: TOOL_CALL_SYNTAX] [default: hermes]' -r -f -a "hermes\t'`<tool_call>{"name": …, "arguments": {…}}</tool_call>`'
qwen3-coder\t'`<tool_call><function=NAME><parameter=K>v</parameter></function></tool_call>`'
json\t'A fenced ```json block with name and arguments'"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l tool-description-limit -d 'Characters of a tool\'s description put in the question [env: TOOL_DESCRIPTION_LIMIT] [default: 512]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l model-map -d 'Lingma model for client model names matching a glob, e.g. \'claude-*=dashscope_qwen3_coder\' (repeat; first match wins) [env: MODEL_MAP, comma-separated]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l response-store-entries -d 'Responses kept for previous_response_id (store: true); 0 keeps none [env: RESPONSE_STORE_MAX_ENTRIES] [default: 1000]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l response-store-ttl -d 'Seconds a stored response is kept [env: RESPONSE_STORE_TTL_SEC] [default: 3600]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l replica-id -d 'This replica\'s name, in every response\'s x-lingma-gw-replica header, /healthz and the request log [env: LINGMA_GW_REPLICA_ID] [default: the host name]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l sim -d 'Use the built-in Lingma simulator instead of Lingma [env: LINGMA_SIM] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l metrics-public -d 'Serve /metrics without credentials [env: METRICS_PUBLIC] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l allow-unauthenticated -d 'Allow binding a non-loopback address with no API keys'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l session-reuse -d 'Continue the upstream session when a conversation\'s history matches (--no-session-reuse: replay every time) [env: SESSION_REUSE_ENABLED] [default: true]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l no-session-reuse -d 'Replay the whole conversation in a new session every time'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -l auto-login -d 'Let the gateway log logged-out instances in by itself through headless Chromium (docs/login.md) [env: AUTO_LOGIN_ENABLED] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand serve" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -l lingma-bin -d 'The Lingma binary [env: LINGMA_BIN] [default: newest ~/.lingma/bin/<version>/<platform>/Lingma]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -l work-dir -d 'Root of the instances\' work dirs; an instance\'s is <work-dir>/<name> [env: LINGMA_WORK_DIR] [default: $XDG_DATA_HOME/lingma-gw/instances]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -l startup-timeout -d 'Seconds a Lingma instance has to start and answer `initialize` [env: LINGMA_STARTUP_TIMEOUT] [default: 30]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -l first-token-timeout -d 'Seconds to wait for the first token of an answer, and between two tokens [env: LINGMA_FIRST_TOKEN_TIMEOUT] [default: 120]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -l attach -d 'Use a Lingma that is already running (an IDE\'s) instead of starting one: `auto` finds it through its info file or socket; or an info file, a Unix socket, a ws:// URL. It is never started, stopped or logged in or out [env: LINGMA_ATTACH]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -l lingma-dialect -d 'The dialect to speak: chat/ask (legacy, the plugin runtime) or session/* (acp, the desktop IDE\'s runtime); auto tries session/new once [env: LINGMA_DIALECT] [default: auto]' -r -f -a "auto\t''
legacy\t''
acp\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -l instance -d 'Instance name (inst-0, inst-1, ... or the accounts file\'s names) [default: inst-0]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -l sim -d 'Use the built-in Lingma simulator instead of Lingma [env: LINGMA_SIM] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -l json -d 'Print JSON instead of a table'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand models" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l lingma-bin -d 'The Lingma binary [env: LINGMA_BIN] [default: newest ~/.lingma/bin/<version>/<platform>/Lingma]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l work-dir -d 'Root of the instances\' work dirs; an instance\'s is <work-dir>/<name> [env: LINGMA_WORK_DIR] [default: $XDG_DATA_HOME/lingma-gw/instances]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l startup-timeout -d 'Seconds a Lingma instance has to start and answer `initialize` [env: LINGMA_STARTUP_TIMEOUT] [default: 30]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l first-token-timeout -d 'Seconds to wait for the first token of an answer, and between two tokens [env: LINGMA_FIRST_TOKEN_TIMEOUT] [default: 120]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l attach -d 'Use a Lingma that is already running (an IDE\'s) instead of starting one: `auto` finds it through its info file or socket; or an info file, a Unix socket, a ws:// URL. It is never started, stopped or logged in or out [env: LINGMA_ATTACH]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l lingma-dialect -d 'The dialect to speak: chat/ask (legacy, the plugin runtime) or session/* (acp, the desktop IDE\'s runtime); auto tries session/new once [env: LINGMA_DIALECT] [default: auto]' -r -f -a "auto\t''
legacy\t''
acp\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l instance -d 'Instance name (inst-0, inst-1, ... or the accounts file\'s names) [default: inst-0]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -s m -l model -d 'Model key or display name [default: Lingma\'s default]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -s s -l system -d 'A system message sent before the question' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l sim -d 'Use the built-in Lingma simulator instead of Lingma [env: LINGMA_SIM] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l json -d 'Print one JSON object (text, model, session id, latency, usage) instead of streaming'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -l show-reasoning -d 'Show the model\'s reasoning on stderr (also with -v)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand chat" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -l lingma-bin -d 'The Lingma binary [env: LINGMA_BIN] [default: newest ~/.lingma/bin/<version>/<platform>/Lingma]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -l work-dir -d 'Root of the instances\' work dirs; an instance\'s is <work-dir>/<name> [env: LINGMA_WORK_DIR] [default: $XDG_DATA_HOME/lingma-gw/instances]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -l startup-timeout -d 'Seconds a Lingma instance has to start and answer `initialize` [env: LINGMA_STARTUP_TIMEOUT] [default: 30]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -l first-token-timeout -d 'Seconds to wait for the first token of an answer, and between two tokens [env: LINGMA_FIRST_TOKEN_TIMEOUT] [default: 120]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -l attach -d 'Use a Lingma that is already running (an IDE\'s) instead of starting one: `auto` finds it through its info file or socket; or an info file, a Unix socket, a ws:// URL. It is never started, stopped or logged in or out [env: LINGMA_ATTACH]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -l lingma-dialect -d 'The dialect to speak: chat/ask (legacy, the plugin runtime) or session/* (acp, the desktop IDE\'s runtime); auto tries session/new once [env: LINGMA_DIALECT] [default: auto]' -r -f -a "auto\t''
legacy\t''
acp\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -l instance -d 'Instance name (inst-0, inst-1, ... or the accounts file\'s names) [default: inst-0]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -l sim -d 'Use the built-in Lingma simulator instead of Lingma [env: LINGMA_SIM] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -l json -d 'Print JSON instead of a checklist'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand probe" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l lingma-bin -d 'The Lingma binary [env: LINGMA_BIN] [default: newest ~/.lingma/bin/<version>/<platform>/Lingma]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l work-dir -d 'Root of the instances\' work dirs; an instance\'s is <work-dir>/<name> [env: LINGMA_WORK_DIR] [default: $XDG_DATA_HOME/lingma-gw/instances]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l startup-timeout -d 'Seconds a Lingma instance has to start and answer `initialize` [env: LINGMA_STARTUP_TIMEOUT] [default: 30]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l first-token-timeout -d 'Seconds to wait for the first token of an answer, and between two tokens [env: LINGMA_FIRST_TOKEN_TIMEOUT] [default: 120]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l instance -d 'Instance name (inst-0, inst-1, ... or the accounts file\'s names) [default: inst-0]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l callback-url -d 'Finish a login with the callback URL a browser was sent to (http://127.0.0.1:PORT/auth/callback?...)' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l username -d 'Account for --headless and the gateway\'s auto-login, when the accounts file names none [env: AUTO_LOGIN_USERNAME]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l browser -d 'Chromium to drive [env: CHROME, AUTO_LOGIN_BROWSER] [default: /usr/bin/chromium]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l dedicated-domain-url -d 'Switch Lingma to this dedicated (enterprise) domain before logging in [env: DEDICATED_DOMAIN_URL]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l timeout -d 'Seconds to wait for the login [default: 300; with --headless AUTO_LOGIN_TIMEOUT or 180]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l sim -d 'Use the built-in Lingma simulator instead of Lingma [env: LINGMA_SIM] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l no-browser -d 'Print the login URL but do not open a browser'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l headless -d 'Log in through a headless Chromium with --username and a password (from --password-stdin, the accounts file\'s password_env or AUTO_LOGIN_PASSWORD)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l visible -d 'Show Chromium at the login page and wait until you have logged in there'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l password-stdin -d 'Read the password for --headless from the first line of stdin'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -l persistent-profile -d 'Keep a browser profile per account (fewer verification prompts) instead of a fresh one [env: AUTO_LOGIN_PERSISTENT_PROFILE] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand login" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and not __fish_seen_subcommand_from export import help" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and not __fish_seen_subcommand_from export import help" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and not __fish_seen_subcommand_from export import help" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and not __fish_seen_subcommand_from export import help" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and not __fish_seen_subcommand_from export import help" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and not __fish_seen_subcommand_from export import help" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and not __fish_seen_subcommand_from export import help" -f -a "export" -d 'Write a bundle of a logged-in instance\'s login files (tar.gz + manifest)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and not __fish_seen_subcommand_from export import help" -f -a "import" -d 'Install a bundle into an instance\'s work dir (raw, base64 or encrypted)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and not __fish_seen_subcommand_from export import help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l lingma-bin -d 'The Lingma binary [env: LINGMA_BIN] [default: newest ~/.lingma/bin/<version>/<platform>/Lingma]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l work-dir -d 'Root of the instances\' work dirs; an instance\'s is <work-dir>/<name> [env: LINGMA_WORK_DIR] [default: $XDG_DATA_HOME/lingma-gw/instances]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l startup-timeout -d 'Seconds a Lingma instance has to start and answer `initialize` [env: LINGMA_STARTUP_TIMEOUT] [default: 30]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l first-token-timeout -d 'Seconds to wait for the first token of an answer, and between two tokens [env: LINGMA_FIRST_TOKEN_TIMEOUT] [default: 120]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l instance -d 'Instance name (inst-0, inst-1, ... or the accounts file\'s names) [default: inst-0]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -s o -l output -d 'Where to write the bundle; `-` is stdout [default: -]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l sim -d 'Use the built-in Lingma simulator instead of Lingma [env: LINGMA_SIM] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l base64 -d 'Write base64 on one line (for environment variables and CI secrets)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l with-history -d 'Also include the chat history (cache/db/*)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l encrypt -d 'Encrypt with a passphrase (age); the passphrase comes from --passphrase-stdin or LINGMA_BUNDLE_PASSPHRASE'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -l passphrase-stdin -d 'Read the passphrase from the first line of stdin'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from export" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -l lingma-bin -d 'The Lingma binary [env: LINGMA_BIN] [default: newest ~/.lingma/bin/<version>/<platform>/Lingma]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -l work-dir -d 'Root of the instances\' work dirs; an instance\'s is <work-dir>/<name> [env: LINGMA_WORK_DIR] [default: $XDG_DATA_HOME/lingma-gw/instances]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -l startup-timeout -d 'Seconds a Lingma instance has to start and answer `initialize` [env: LINGMA_STARTUP_TIMEOUT] [default: 30]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -l first-token-timeout -d 'Seconds to wait for the first token of an answer, and between two tokens [env: LINGMA_FIRST_TOKEN_TIMEOUT] [default: 120]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -l instance -d 'Instance name (inst-0, inst-1, ... or the accounts file\'s names) [default: inst-0]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -l sim -d 'Use the built-in Lingma simulator instead of Lingma [env: LINGMA_SIM] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -l force -d 'Replace the login of a work dir that is already logged in'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -l passphrase-stdin -d 'Read the passphrase of an encrypted bundle from the first line of stdin (the bundle must then come from a FILE); without it, LINGMA_BUNDLE_PASSPHRASE'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -l no-restart -d 'Do not restart the running instance (it keeps its old login until its next start)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from import" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write a bundle of a logged-in instance\'s login files (tar.gz + manifest)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "import" -d 'Install a bundle into an instance\'s work dir (raw, base64 or encrypted)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l lingma-bin -d 'The Lingma binary [env: LINGMA_BIN] [default: newest ~/.lingma/bin/<version>/<platform>/Lingma]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l work-dir -d 'Root of the instances\' work dirs; an instance\'s is <work-dir>/<name> [env: LINGMA_WORK_DIR] [default: $XDG_DATA_HOME/lingma-gw/instances]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l startup-timeout -d 'Seconds a Lingma instance has to start and answer `initialize` [env: LINGMA_STARTUP_TIMEOUT] [default: 30]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l first-token-timeout -d 'Seconds to wait for the first token of an answer, and between two tokens [env: LINGMA_FIRST_TOKEN_TIMEOUT] [default: 120]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l instance -d 'Instance name (inst-0, inst-1, ... or the accounts file\'s names) [default: inst-0]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -s o -l output -d 'Where to write the bundle; `-` is stdout [default: -]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l sim -d 'Use the built-in Lingma simulator instead of Lingma [env: LINGMA_SIM] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l base64 -d 'Write base64 on one line (for environment variables and CI secrets)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l with-history -d 'Also include the chat history (cache/db/*)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l encrypt -d 'Encrypt with a passphrase (age); the passphrase comes from --passphrase-stdin or LINGMA_BUNDLE_PASSPHRASE'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -l passphrase-stdin -d 'Read the passphrase from the first line of stdin'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand export" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -l lingma-bin -d 'The Lingma binary [env: LINGMA_BIN] [default: newest ~/.lingma/bin/<version>/<platform>/Lingma]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -l work-dir -d 'Root of the instances\' work dirs; an instance\'s is <work-dir>/<name> [env: LINGMA_WORK_DIR] [default: $XDG_DATA_HOME/lingma-gw/instances]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -l startup-timeout -d 'Seconds a Lingma instance has to start and answer `initialize` [env: LINGMA_STARTUP_TIMEOUT] [default: 30]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -l first-token-timeout -d 'Seconds to wait for the first token of an answer, and between two tokens [env: LINGMA_FIRST_TOKEN_TIMEOUT] [default: 120]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -l instance -d 'Instance name (inst-0, inst-1, ... or the accounts file\'s names) [default: inst-0]' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -l sim -d 'Use the built-in Lingma simulator instead of Lingma [env: LINGMA_SIM] [default: false]'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -l force -d 'Replace the login of a work dir that is already logged in'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -l passphrase-stdin -d 'Read the passphrase of an encrypted bundle from the first line of stdin (the bundle must then come from a FILE); without it, LINGMA_BUNDLE_PASSPHRASE'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -l no-restart -d 'Do not restart the running instance (it keeps its old login until its next start)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand import" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand completions" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand completions" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand completions" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand completions" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand completions" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand completions" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand man" -l out-dir -d 'Write every page (lingma-gw.1, lingma-gw-serve.1, ...) into DIR instead of printing one' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand man" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand man" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand man" -l readme-table -d 'Print the README\'s settings table (Markdown) instead; for scripts/gen-docs.sh'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand man" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand man" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand man" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand man" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and not __fish_seen_subcommand_from start status version help" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and not __fish_seen_subcommand_from start status version help" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and not __fish_seen_subcommand_from start status version help" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and not __fish_seen_subcommand_from start status version help" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and not __fish_seen_subcommand_from start status version help" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and not __fish_seen_subcommand_from start status version help" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and not __fish_seen_subcommand_from start status version help" -f -a "start" -d 'Start a simulated Lingma (same flags as `Lingma start`, plus simulator knobs)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and not __fish_seen_subcommand_from start status version help" -f -a "status" -d 'Print the login state of a work dir without starting a server'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and not __fish_seen_subcommand_from start status version help" -f -a "version" -d 'Print the simulated Lingma version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and not __fish_seen_subcommand_from start status version help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l workDir -d 'Work dir (logs/, cache/ with the login files, session store)' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l socketPort -d 'WebSocket port on 127.0.0.1 (0 picks a free one and logs it)' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l httpPort -d 'HTTP port on 127.0.0.1 (login callback and test login page; 0 picks a free one)' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l endpoint -d 'Remote API base (logged and returned by config/getEndpoint; not persisted)' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l transportType -d 'Accepted for compatibility and logged; has no effect' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l copyDataDir -d 'Copy this directory into the work dir first, except cache/user (the real binary\'s quirk)' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l startup-delay-ms -d 'Delay before listening' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l first-token-delay-ms -d 'Delay between step_start and the first token' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l chunk-size -d 'Characters per chat/answer delta (0: the whole answer in one delta)' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l chunk-delay-ms -d 'Delay between deltas' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l machine-token -d 'Require this `Cosy-MachineToken` header on the WebSocket handshake (else 401)' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l login-challenge -d 'What the test login page does after a correct password' -r -f -a "none\t'Redirect to `/auth/callback` at once'
captcha\t'Show a slider captcha and never redirect'
verification\t'Navigate to an identity-verification page (`/iv/...`, 安全验证)'"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l accounts -d 'Accounts of the test login page: USER:PASSWORD[:CHALLENGE],...' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l credit-usage -d 'JSON object returned by credit/usage' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l think -d 'How reasoning models deliver their thinking' -r -f -a "inline\t'A fenced ````think::1200 block at the start of the answer stream, as real Lingma sends it'
callback\t'`chat/think` callbacks with `step:"start"` ... `step:"done"`'"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l dialect -d 'Which dialects to speak: legacy `chat/ask` (the plugin runtime), ACP `session/*` (the desktop IDE\'s runtime), or both' -r -f -a "legacy\t'Only `chat/ask`: `session/*` is "method not found", as on the plugin runtime that `Lingma start` launches'
acp\t'Only `session/*`: `chat/ask` is "method not found", as on the desktop IDE\'s runtime (whether a real one still answers `chat/ask` is not known)'
both\t'Both, on every connection'"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l info-file -d 'Publish a discovery file here once listening, as an IDE\'s runtime does (`.info.json`: JSON; any other name: the legacy three lines); removed on a clean exit' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l ipc-socket -d 'Also take connections on this Unix socket (Content-Length frames as a byte stream)' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l faults -d 'Faults in directive syntax, e.g. "crash,after=3" or "off-by-one slow=500"' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l error -d 'Finish every chat with this statusCode (e.g. 408, 500)' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l slow -d 'First-token delay (overrides --no-delay)' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l delay -d 'Delay between deltas (overrides --no-delay)' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l fault-after -d 'Answer deltas sent before crash/close/overwrite/retry fire' -r
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l no-delay -d 'Set every delay (startup, first token, between chunks) to 0; fault delays still apply'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l strict-acks -d 'Stall every stream until the client acks each callback'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l logged-out -d 'Do not log a fresh work dir in as the demo account'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l no-request-log -d 'Do not write logs/sim-requests.jsonl'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l delete-needs-id -d 'chat/deleteSessionById accepts only {id}, not {sessionId} (as some builds)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l crash -d 'Exit the process (code 101) mid-stream'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l close -d 'Close the WebSocket mid-stream'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l no-finish -d 'Send step_end, then nothing (no chat/finish)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l quota -d 'Finish every chat as quota exhausted'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l overwrite -d 'Send an overwrite:true delta mid-stream'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l retry -d 'Simulate a remote EOF retry: duplicated partial deltas, then an overwrite'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l off-by-one -d 'Emit each answer under the next ask\'s requestId (per session)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l expired -d 'Start with an expired token (auth/status 3, asks rejected)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l split -d 'Send each frame as two WebSocket messages'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l batch -d 'Send several frames per WebSocket message'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l hang -d 'Accept asks and send nothing at all'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -l step-end-first -d 'Send step_end before the answer deltas (the order captured from Lingma 2.11)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from start" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from status" -s o -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from status" -l workDir -d 'The Lingma work dir to inspect' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from status" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from status" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from version" -l config -d 'Config file (TOML; keys are the flag names with `_`) [env: LINGMA_GW_CONFIG] [default: $XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists]' -r -F
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from version" -l log-format -d 'Log format on stderr [env: LOG_FORMAT] [default: text]' -r -f -a "text\t''
json\t''"
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from version" -s v -l verbose -d 'More log output (-v debug, -vv trace); overrides LOG_LEVEL'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from version" -s q -l quiet -d 'Only errors on stderr, no progress output'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from version" -s h -l help -d 'Print help'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from version" -s V -l version -d 'Print version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start a simulated Lingma (same flags as `Lingma start`, plus simulator knobs)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from help" -f -a "status" -d 'Print the login state of a work dir without starting a server'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from help" -f -a "version" -d 'Print the simulated Lingma version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand sim; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "serve" -d 'Run the OpenAI-compatible HTTP gateway in front of a pool of Lingma processes'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "models" -d 'List the models Lingma offers'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "chat" -d 'Ask Lingma one question and stream the answer to stdout'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "probe" -d 'Diagnose the setup step by step (binary, work dir, start, login, models, a chat)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "login" -d 'Log a Lingma instance in (browser, pasted callback URL, or headless Chromium)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "session" -d 'Move a logged-in session between machines: export and import bundles'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "export" -d 'Write a bundle of a logged-in instance\'s login files (`session export`)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "import" -d 'Install a bundle into an instance\'s work dir (`session import`)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "completions" -d 'Print a shell completion script'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "man" -d 'Print the man page (roff) or a subcommand\'s, or write them all with --out-dir'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "sim" -d 'The built-in Lingma simulator (same command line as the Lingma binary)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and not __fish_seen_subcommand_from serve models chat probe login session export import completions man sim help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and __fish_seen_subcommand_from session" -f -a "export" -d 'Write a bundle of a logged-in instance\'s login files (tar.gz + manifest)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and __fish_seen_subcommand_from session" -f -a "import" -d 'Install a bundle into an instance\'s work dir (raw, base64 or encrypted)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and __fish_seen_subcommand_from sim" -f -a "start" -d 'Start a simulated Lingma (same flags as `Lingma start`, plus simulator knobs)'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and __fish_seen_subcommand_from sim" -f -a "status" -d 'Print the login state of a work dir without starting a server'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand help; and __fish_seen_subcommand_from sim" -f -a "version" -d 'Print the simulated Lingma version'
complete -c lingma-gw -n "__fish_lingma_gw_using_subcommand completions" -f -a "bash elvish fish powershell zsh"
