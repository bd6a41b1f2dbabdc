#!/usr/bin/env escript
%% A packet gateway built on Erlang/OTP's diameter application, not on our code. OTP does the
%% capabilities exchange (so it validates our CEA), the watchdog and the disconnect; this script
%% sends the credit-control requests given as an Erlang term in argv and prints each answer as
%% OTP's strict decoder read it, one JSON line each, with the decoder's `errors` (which must be
%% empty for a conforming answer).
%%
%% The RFC 4006 dictionary is OTP's own example (Debian's erlang-examples), compiled here in
%% memory against the RFC 6733 base dictionary; nothing is written to disk.
%%
%% Usage: gy_client.escript PORT ORIGIN_HOST MSISDN REQUESTS
%%   REQUESTS: [{Label, Type, Number, DestinationRealm, [{RatingGroup, Asked, Used}]}], where
%%   Label and DestinationRealm are strings, Type is 1..4 and Asked/Used octets or none; a sixth
%%   element, a string or none, replaces MSISDN in that request's Subscription-Id (none: no
%%   Subscription-Id).
%% Exit status: 0 done, 1 a failure (printed as {"label":"error",...}), 3 the dictionary is absent.
-mode(compile).

-include_lib("diameter/include/diameter.hrl").

-export([peer_up/3, peer_down/3, pick_peer/4, prepare_request/3, prepare_retransmit/3,
         handle_answer/4, handle_error/4, handle_request/3]).

-define(SERVICE, gy_client).
-define(REALM, "operator.test").
-define(CC_APP, 4).

main([Port, Host, Msisdn, Requests]) ->
    try
        run(list_to_integer(Port), Host, Msisdn, term(Requests))
    catch
        Class:Reason:Stack ->
            fail(io_lib:format("~p:~0p ~0p", [Class, Reason, Stack]))
    end;
main(_) ->
    io:format(standard_error, "usage: gy_client.escript PORT ORIGIN_HOST MSISDN REQUESTS~n", []),
    halt(2).

run(Port, Host, Msisdn, Requests) ->
    load_dictionaries(),
    ok = diameter:start(),
    ok = diameter:start_service(?SERVICE, [
        {'Origin-Host', Host},
        {'Origin-Realm', ?REALM},
        {'Host-IP-Address', [{127, 0, 0, 1}]},
        {'Vendor-Id', 0},
        {'Product-Name', "OTP diameter"},
        {'Auth-Application-Id', [?CC_APP]},
        {decode_format, map},
        %% OTP's defaults, stated: an M-bit AVP the command's grammar does not name is an
        %% error (5001), and so is an AVP that occurs more or less often than it allows.
        {strict_mbit, true},
        {strict_arities, true},
        {string_decode, false},
        {application, [{alias, cc},
                       {dictionary, rfc4006_cc},
                       {module, ?MODULE},
                       {answer_errors, callback}]}]),
    true = diameter:subscribe(?SERVICE),
    {ok, _} = diameter:add_transport(?SERVICE, {connect, [
        {transport_module, diameter_tcp},
        {transport_config, [{raddr, {127, 0, 0, 1}}, {rport, Port}]},
        {connect_timer, 30000}]}),
    print_cea(wait_up()),
    %% A new session at each CCR-INITIAL (or EVENT), as a gateway opens one per bearer.
    lists:foldl(fun(Request, Session0) ->
                        Session = session(element(2, Request), Host, Session0),
                        ask(Session, Host, Msisdn, Request),
                        Session
                end,
                undefined,
                Requests),
    ok = diameter:stop_service(?SERVICE),
    wait_down().

session(Type, Host, _) when Type == 1; Type == 4 -> diameter:session_id(Host);
session(_, _, Session) -> Session.

%% The dictionaries: Filter-Id's from RFC 4005, then RFC 4006's, each inheriting RFC 6733's base.
load_dictionaries() ->
    Dir = filename:join(code:lib_dir(diameter), "examples/dict"),
    lists:foreach(
        fun(Name) ->
            File = filename:join(Dir, Name ++ ".dia"),
            filelib:is_regular(File) orelse missing(File),
            {ok, [Forms]} = diameter_make:codec(File, [return, forms,
                                                       {inherits, "common/diameter_gen_base_rfc6733"}]),
            {ok, Module, Beam} = compile:forms(Forms, [return_errors]),
            {module, Module} = code:load_binary(Module, File, Beam)
        end,
        ["rfc4005_nas", "rfc4006_cc"]).

missing(File) ->
    io:format(standard_error, "~s is absent (apt-get install erlang-examples)~n", [File]),
    halt(3).

wait_up() ->
    receive
        #diameter_event{info = {up, _Ref, _Peer, _Config, #diameter_packet{} = CEA}} ->
            CEA;
        #diameter_event{info = {closed, _Ref, Reason, _Config}} ->
            fail(io_lib:format("capabilities exchange failed: ~0p", [Reason]));
        #diameter_event{} ->
            wait_up()
    after 15000 ->
        fail("no capabilities exchange within 15 s")
    end.

%% After DPR/DPA (sent by stop_service) the transport is gone.
wait_down() ->
    receive
        #diameter_event{info = stop} -> ok;
        #diameter_event{} -> wait_down()
    after 5000 -> ok
    end.

print_cea(#diameter_packet{header = Header, msg = Msg, errors = Errors}) ->
    Avps = avps(Msg),
    print([{label, <<"cea">>}, {command, name(Msg)}, {e, Header#diameter_header.is_error},
           {errors, errors(Errors)}, {result, one(maps:get('Result-Code', Avps, undefined))},
           {origin_host, one(maps:get('Origin-Host', Avps))},
           {origin_realm, one(maps:get('Origin-Realm', Avps))},
           {product, one(maps:get('Product-Name', Avps))},
           {vendor, one(maps:get('Vendor-Id', Avps))},
           {applications, maps:get('Auth-Application-Id', Avps, [])}]).

ask(Session, Host, Msisdn, {Label, Type, Number, Realm, Services}) ->
    ask(Session, Host, Msisdn, {Label, Type, Number, Realm, Services, Msisdn});
ask(Session, Host, _, {Label, Type, Number, Realm, Services, Subscriber}) ->
    CCR = #{'Session-Id' => Session,
            'Origin-Host' => Host,
            'Origin-Realm' => ?REALM,
            'Destination-Realm' => Realm,
            'Auth-Application-Id' => ?CC_APP,
            'Service-Context-Id' => "32251@3gpp.org",
            'CC-Request-Type' => Type,
            'CC-Request-Number' => Number,
            'Subscription-Id' => [#{'Subscription-Id-Type' => 0, 'Subscription-Id-Data' => Subscriber}
                                  || Subscriber /= none],
            'Multiple-Services-Credit-Control' => [mscc(S) || S <- Services]},
    case diameter:call(?SERVICE, cc, ['CCR' | CCR], [{timeout, 15000}]) of
        #diameter_packet{} = Answer -> print_cca(Label, Answer);
        Other -> fail(io_lib:format("~s: no answer: ~0p", [Label, Other]))
    end.

mscc({Group, Asked, Used}) ->
    maps:from_list([{'Rating-Group', Group}]
                   ++ [{'Requested-Service-Unit', #{'CC-Total-Octets' => Asked}} || Asked /= none]
                   ++ [{'Used-Service-Unit', [#{'CC-Total-Octets' => Used}]} || Used /= none]).

print_cca(Label, #diameter_packet{header = Header, msg = Msg, errors = Errors}) ->
    Avps = avps(Msg),
    print([{label, list_to_binary(Label)}, {command, name(Msg)}, {e, Header#diameter_header.is_error},
           {errors, errors(Errors)},
           {result, one(maps:get('Result-Code', Avps, undefined))},
           {origin_host, one(maps:get('Origin-Host', Avps))},
           {type, one(maps:get('CC-Request-Type', Avps, undefined))},
           {number, one(maps:get('CC-Request-Number', Avps, undefined))},
           {failed, [text("~0p", [F]) || F <- many(maps:get('Failed-AVP', Avps, []))]},
           {mscc, [{obj, mscc_out(M)} || M <- many(maps:get('Multiple-Services-Credit-Control', Avps, []))]}]).

mscc_out(M) ->
    Granted = case one(maps:get('Granted-Service-Unit', M, undefined)) of
                  undefined -> null;
                  G -> one(maps:get('CC-Total-Octets', G, undefined))
              end,
    [{rating_group, one(maps:get('Rating-Group', M, undefined))},
     {result, one(maps:get('Result-Code', M, undefined))},
     {granted, Granted},
     {validity, one(maps:get('Validity-Time', M, undefined))}].

%% A decoded message: [Name | #{Avp => Value}] (an optional AVP's value is a list of 0 or 1).
avps([_Name | Map]) when is_map(Map) -> Map.

name([Name | _]) -> Name.

one([]) -> undefined;
one([V]) -> V;
one(V) -> V.

many(L) when is_list(L) -> L;
many(V) -> [V].

%% The decoder's errors: [ResultCode | {ResultCode, #diameter_avp{}}], shown as Erlang terms.
errors(Errors) ->
    [text("~0p", [E]) || E <- Errors].

text(Format, Args) -> unicode:characters_to_binary(io_lib:format(Format, Args)).

fail(Text) ->
    print([{label, <<"error">>}, {error, unicode:characters_to_binary(Text)}]),
    halt(1).

term(Text) ->
    {ok, Tokens, _} = erl_scan:string(Text ++ "."),
    {ok, Term} = erl_parse:parse_term(Tokens),
    Term.

%% JSON, for the few shapes printed here: binaries are strings, lists arrays.
print(Fields) ->
    io:put_chars([json({obj, Fields}), $\n]).

json(undefined) -> "null";
json(null) -> "null";
json(true) -> "true";
json(false) -> "false";
json(N) when is_integer(N) -> integer_to_list(N);
json(A) when is_atom(A) -> json(atom_to_binary(A));
json(B) when is_binary(B) -> [$", [escape(C) || C <- unicode:characters_to_list(B)], $"];
json({obj, Fields}) ->
    ["{", lists:join(",", [[json(K), ":", json(V)] || {K, V} <- Fields]), "}"];
json(L) when is_list(L) -> ["[", lists:join(",", [json(V) || V <- L]), "]"].

escape($") -> "\\\"";
escape($\\) -> "\\\\";
escape(C) when C < 32 -> io_lib:format("\\u~4.16.0b", [C]);
escape(C) -> C.

%% diameter callbacks.

peer_up(_Service, _Peer, State) -> State.

peer_down(_Service, _Peer, State) -> State.

pick_peer([Peer | _], _, _Service, _State) -> {ok, Peer}.

prepare_request(#diameter_packet{msg = Msg}, _Service, _Peer) -> {send, Msg}.

prepare_retransmit(_Packet, _Service, _Peer) -> discard.

%% The whole packet, so that the header (E bit) and the decoder's errors reach the caller.
handle_answer(Packet, _Request, _Service, _Peer) -> Packet.

handle_error(Reason, _Request, _Service, _Peer) -> {error, Reason}.

handle_request(_Packet, _Service, _Peer) -> {answer_message, 3001}.
