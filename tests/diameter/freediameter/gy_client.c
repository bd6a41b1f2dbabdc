/* A packet gateway built on freeDiameter's core (libfdcore, Debian's libfreediameter-dev) and its
 * RFC 4006 dictionary extension (dict_dcca.fdx), not on our code. freeDiameter connects to the
 * peer named in the configuration file, does CER/CEA and the watchdog, and parses every answer
 * against its dictionary's rules: an answer that breaks them is reported through the parsing-error
 * hook and dropped (so it never reaches us here). This program sends the credit-control requests
 * given on the command line and prints each answer as one JSON line; any parsing error, dropped
 * message or failed connection is printed as {"label":"error",...} and makes the exit status 1.
 *
 * Usage: gy_client CONF SERVER_IDENTITY MSISDN REQUEST...
 *   REQUEST: LABEL:TYPE:NUMBER:DESTINATION_REALM:RG/ASKED/USED[,RG/ASKED/USED...]
 *   (ASKED or USED "-" when absent). One session for all requests.
 * Compiled by the tests: cc gy_client.c -lfdcore -lfdproto
 */
#include <freeDiameter/freeDiameter-host.h>
#include <freeDiameter/libfdcore.h>

#include <semaphore.h>
#include <stdint.h>
#include <time.h>

static struct dictionary *dict;
static sem_t answered;
static int failed;
static struct msg *answer;

static struct dict_object *avp_named(const char *name) {
    struct dict_object *model = NULL;
    if (fd_dict_search(dict, DICT_AVP, AVP_BY_NAME_ALL_VENDORS, name, &model, ENOENT)) {
        printf("{\"label\":\"error\",\"error\":\"no AVP %s in the dictionary\"}\n", name);
        exit(1);
    }
    return model;
}

static struct avp *new_avp(const char *name) {
    struct avp *avp = NULL;
    CHECK_FCT_DO(fd_msg_avp_new(avp_named(name), 0, &avp), exit(1));
    return avp;
}

static void add(msg_or_avp *parent, struct avp *avp) {
    CHECK_FCT_DO(fd_msg_avp_add(parent, MSG_BRW_LAST_CHILD, avp), exit(1));
}

static struct avp *u32(const char *name, uint32_t value) {
    struct avp *avp = new_avp(name);
    union avp_value v = {.u32 = value};
    CHECK_FCT_DO(fd_msg_avp_setvalue(avp, &v), exit(1));
    return avp;
}

static struct avp *u64(const char *name, uint64_t value) {
    struct avp *avp = new_avp(name);
    union avp_value v = {.u64 = value};
    CHECK_FCT_DO(fd_msg_avp_setvalue(avp, &v), exit(1));
    return avp;
}

static struct avp *enumerated(const char *name, int32_t value) {
    struct avp *avp = new_avp(name);
    union avp_value v = {.i32 = value};
    CHECK_FCT_DO(fd_msg_avp_setvalue(avp, &v), exit(1));
    return avp;
}

static struct avp *text(const char *name, const char *value) {
    struct avp *avp = new_avp(name);
    union avp_value v = {.os = {.data = (uint8_t *)value, .len = strlen(value)}};
    CHECK_FCT_DO(fd_msg_avp_setvalue(avp, &v), exit(1));
    return avp;
}

/* The first AVP of this code directly under a message or grouped AVP, or NULL. */
static struct avp_hdr *child(msg_or_avp *parent, uint32_t code) {
    struct avp *avp = NULL;
    struct avp_hdr *hdr = NULL;
    fd_msg_browse(parent, MSG_BRW_FIRST_CHILD, &avp, NULL);
    while (avp != NULL) {
        CHECK_FCT_DO(fd_msg_avp_hdr(avp, &hdr), exit(1));
        if (hdr->avp_code == code && hdr->avp_vendor == 0)
            return hdr;
        fd_msg_browse(avp, MSG_BRW_NEXT, &avp, NULL);
    }
    return NULL;
}

static struct avp *child_avp(msg_or_avp *parent, uint32_t code) {
    struct avp *avp = NULL;
    struct avp_hdr *hdr = NULL;
    fd_msg_browse(parent, MSG_BRW_FIRST_CHILD, &avp, NULL);
    while (avp != NULL) {
        CHECK_FCT_DO(fd_msg_avp_hdr(avp, &hdr), exit(1));
        if (hdr->avp_code == code && hdr->avp_vendor == 0)
            return avp;
        fd_msg_browse(avp, MSG_BRW_NEXT, &avp, NULL);
    }
    return NULL;
}

static void print_u32(const char *key, struct avp_hdr *hdr) {
    if (hdr == NULL || hdr->avp_value == NULL)
        printf(",\"%s\":null", key);
    else
        printf(",\"%s\":%u", key, hdr->avp_value->u32);
}

static void print_answer(const char *label, struct msg *msg) {
    struct msg_hdr *hdr = NULL;
    struct avp *avp = NULL;
    struct avp_hdr *avp_hdr = NULL;
    int first = 1;
    CHECK_FCT_DO(fd_msg_hdr(msg, &hdr), exit(1));
    printf("{\"label\":\"%s\",\"command\":%u,\"e\":%s", label, hdr->msg_code,
           (hdr->msg_flags & CMD_FLAG_ERROR) ? "true" : "false");
    print_u32("result", child(msg, 268));
    print_u32("type", child(msg, 416));
    print_u32("number", child(msg, 415));
    printf(",\"failed\":%s,\"mscc\":[", child(msg, 279) ? "true" : "false");
    fd_msg_browse(msg, MSG_BRW_FIRST_CHILD, &avp, NULL);
    while (avp != NULL) {
        CHECK_FCT_DO(fd_msg_avp_hdr(avp, &avp_hdr), exit(1));
        if (avp_hdr->avp_code == 456) {
            struct avp *granted = child_avp(avp, 431);
            struct avp_hdr *octets = granted ? child(granted, 421) : NULL;
            printf("%s{\"rating_group\":%u", first ? "" : ",", child(avp, 432) ? child(avp, 432)->avp_value->u32 : 0);
            print_u32("result", child(avp, 268));
            if (octets != NULL && octets->avp_value != NULL)
                printf(",\"granted\":%llu", (unsigned long long)octets->avp_value->u64);
            else
                printf(",\"granted\":null");
            print_u32("validity", child(avp, 448));
            printf("}");
            first = 0;
        }
        fd_msg_browse(avp, MSG_BRW_NEXT, &avp, NULL);
    }
    printf("]}\n");
    fflush(stdout);
}

static void on_answer(void *data, struct msg **msg) {
    (void)data;
    answer = *msg;
    *msg = NULL;
    sem_post(&answered);
}

static void on_expiry(void *data, DiamId_t peer, size_t len, struct msg **request) {
    (void)data, (void)peer, (void)len, (void)request;
    answer = NULL;
    sem_post(&answered);
}

/* What freeDiameter reports about messages it could not parse or drops, and connections. */
static void on_hook(enum fd_hook_type type, struct msg *msg, struct peer_hdr *peer, void *other,
                    struct fd_hook_permsgdata *pmd, void *regdata) {
    (void)msg, (void)peer, (void)pmd, (void)regdata;
    const char *what = type == HOOK_MESSAGE_PARSING_ERROR ? "parsing error"
                       : type == HOOK_MESSAGE_DROPPED     ? "dropped"
                                                          : "connection failed";
    if (type == HOOK_MESSAGE_PARSING_ERROR && msg == NULL)
        other = "undecodable bytes";
    printf("{\"label\":\"error\",\"error\":\"%s: %s\"", what, other ? (const char *)other : "");
    if (msg != NULL && type != HOOK_MESSAGE_PARSING_ERROR) {
        struct avp_hdr *rc = child(msg, 268);
        if (rc != NULL && rc->avp_value != NULL)
            printf(",\"result\":%u", rc->avp_value->u32);
    }
    printf("}\n");
    fflush(stdout);
    failed = 1;
    sem_post(&answered); /* a request waiting for its answer waits no more */
}

static void on_connected(enum fd_hook_type type, struct msg *msg, struct peer_hdr *peer, void *other,
                         struct fd_hook_permsgdata *pmd, void *regdata) {
    (void)type, (void)peer, (void)other, (void)pmd, (void)regdata;
    if (msg != NULL)
        print_answer("cea", msg);
}

static struct avp *mscc(const char *block) {
    unsigned group;
    char asked[32], used[32];
    if (sscanf(block, "%u/%31[^/]/%31s", &group, asked, used) != 3) {
        printf("{\"label\":\"error\",\"error\":\"bad service %s\"}\n", block);
        exit(2);
    }
    struct avp *avp = new_avp("Multiple-Services-Credit-Control");
    if (strcmp(asked, "-") != 0) {
        struct avp *rsu = new_avp("Requested-Service-Unit");
        add(rsu, u64("CC-Total-Octets", strtoull(asked, NULL, 10)));
        add(avp, rsu);
    }
    if (strcmp(used, "-") != 0) {
        struct avp *usu = new_avp("Used-Service-Unit");
        add(usu, u64("CC-Total-Octets", strtoull(used, NULL, 10)));
        add(avp, usu);
    }
    add(avp, u32("Rating-Group", group));
    return avp;
}

static void ask(const char *msisdn, char *spec, os0_t *session, size_t *session_len) {
    char *label = strtok(spec, ":"), *type = strtok(NULL, ":"), *number = strtok(NULL, ":");
    char *realm = strtok(NULL, ":"), *services = strtok(NULL, ":");
    struct dict_object *ccr_model = NULL;
    struct msg *ccr = NULL;
    struct avp *sid = NULL;
    if (!label || !type || !number || !realm || !services) {
        printf("{\"label\":\"error\",\"error\":\"bad request\"}\n");
        exit(2);
    }
    CHECK_FCT_DO(fd_dict_search(dict, DICT_COMMAND, CMD_BY_NAME, "Credit-Control-Request", &ccr_model, ENOENT),
                 exit(1));
    CHECK_FCT_DO(fd_msg_new(ccr_model, MSGFL_ALLOC_ETEID, &ccr), exit(1));
    if (*session == NULL) {
        CHECK_FCT_DO(fd_msg_new_session(ccr, (os0_t) "fd", 2), exit(1));
        struct avp_hdr *hdr = child(ccr, 263);
        *session_len = hdr->avp_value->os.len;
        *session = os0dup(hdr->avp_value->os.data, *session_len);
    } else {
        add(ccr, text("Session-Id", (const char *)*session));
    }
    CHECK_FCT_DO(fd_msg_add_origin(ccr, 0), exit(1));
    add(ccr, text("Destination-Realm", realm));
    add(ccr, u32("Auth-Application-Id", 4));
    add(ccr, text("Service-Context-Id", "32251@3gpp.org"));
    add(ccr, enumerated("CC-Request-Type", atoi(type)));
    add(ccr, u32("CC-Request-Number", (uint32_t)atoi(number)));
    sid = new_avp("Subscription-Id");
    add(sid, enumerated("Subscription-Id-Type", 0)); /* END_USER_E164 */
    add(sid, text("Subscription-Id-Data", msisdn));
    add(ccr, sid);
    for (char *block = strtok(services, ","); block != NULL; block = strtok(NULL, ","))
        add(ccr, mscc(block));
    {
        struct msg_hdr *hdr = NULL;
        CHECK_FCT_DO(fd_msg_hdr(ccr, &hdr), exit(1));
        hdr->msg_flags |= CMD_FLAG_PROXIABLE;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 15;
    CHECK_FCT_DO(fd_msg_send_timeout(&ccr, on_answer, NULL, on_expiry, &deadline), exit(1));
    sem_wait(&answered);
    if (failed)
        return;
    if (answer == NULL) {
        printf("{\"label\":\"error\",\"error\":\"%s: no answer (or one freeDiameter dropped)\"}\n", label);
        failed = 1;
        return;
    }
    print_answer(label, answer);
    fd_msg_free(answer);
}

int main(int argc, char **argv) {
    struct fd_hook_hdl *hooks = NULL, *connected = NULL;
    struct peer_hdr *peer = NULL;
    os0_t session = NULL;
    size_t session_len = 0;
    if (argc < 5) {
        fprintf(stderr, "usage: gy_client CONF SERVER_IDENTITY MSISDN REQUEST...\n");
        return 2;
    }
    sem_init(&answered, 0, 0);
    alarm(60); /* whatever happens (a shutdown that hangs), the test gets its exit status */
    CHECK_FCT_DO(fd_core_initialize(), return 1);
    fd_g_debug_lvl = FD_LOG_ERROR;
    CHECK_FCT_DO(fd_core_parseconf(argv[1]), return 1);
    dict = fd_g_config->cnf_dict;
    CHECK_FCT_DO(fd_hook_register(HOOK_MASK(HOOK_MESSAGE_PARSING_ERROR, HOOK_MESSAGE_DROPPED,
                                            HOOK_PEER_CONNECT_FAILED),
                                  on_hook, NULL, NULL, &hooks),
                 return 1);
    CHECK_FCT_DO(fd_hook_register(HOOK_MASK(HOOK_PEER_CONNECT_SUCCESS), on_connected, NULL, NULL, &connected),
                 return 1);
    {
        /* Advertise credit control (application 4) in the CER, as a gateway does. */
        struct dict_object *application = NULL;
        application_id_t id = 4;
        CHECK_FCT_DO(fd_dict_search(dict, DICT_APPLICATION, APPLICATION_BY_ID, &id, &application, ENOENT), return 1);
        CHECK_FCT_DO(fd_disp_app_support(application, NULL, 1, 0), return 1);
    }
    CHECK_FCT_DO(fd_core_start(), return 1);
    CHECK_FCT_DO(fd_core_waitstartcomplete(), return 1);
    for (int waited = 0; !failed; waited++) {
        fd_peer_getbyid((DiamId_t)argv[2], strlen(argv[2]), 1, &peer);
        if (peer != NULL && fd_peer_get_state(peer) == STATE_OPEN)
            break;
        if (waited == 150) {
            printf("{\"label\":\"error\",\"error\":\"no open connection within 15 s\"}\n");
            failed = 1;
        }
        usleep(100000);
    }
    for (int i = 4; i < argc && !failed; i++)
        ask(argv[3], argv[i], &session, &session_len);
    fd_core_shutdown();
    fd_core_wait_shutdown_complete();
    return failed;
}
