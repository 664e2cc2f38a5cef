# The HTTP contract, byte for byte, with no server behind it: routing,
# methods, headers, HEAD, pass-through of env and response.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use lib 't/lib';
use HEBuild qw(unavailable);
use HETest::Servers qw(make_sqlite find_binary);
use RT::Extension::HealthEndpoint;

my $OK_NONE = '{"checks":{"database":"skipped","redis":"skipped"},"status":"ok"}';
my @calls;
my $inner = sub { push @calls, [@_]; [ 299, [ 'X-Inner' => 1 ], ['inner'] ] };
my @log;
my $app = RT::Extension::HealthEndpoint->wrap($inner,
    logger => sub { push @log, [@_] });

sub req {
    my ($method, $path, %more) = @_;
    my %env = (REQUEST_METHOD => $method, PATH_INFO => $path, %more);
    return $app->(\%env);
}

sub headers_ok {
    my ($res, $type, $len, $name) = @_;
    my @want = ('Content-Type' => $type, 'Content-Length' => $len,
                'Cache-Control' => 'no-store');
    is_deeply($res->[1], \@want, "$name: headers");
}

# ping
my $r = req(GET => '/healthz/ping');
is($r->[0], 200, 'ping GET: 200');
headers_ok($r, 'text/plain', 4, 'ping GET');
is_deeply($r->[2], ['pong'], 'ping GET: body pong');

$r = req(HEAD => '/healthz/ping');
is($r->[0], 200, 'ping HEAD: 200');
headers_ok($r, 'text/plain', 4, 'ping HEAD');
is_deeply($r->[2], [], 'ping HEAD: empty body');

# status with nothing configured: both skipped, still ok
$r = req(GET => '/healthz/status');
is($r->[0], 200, 'status GET: 200');
headers_ok($r, 'application/json', length $OK_NONE, 'status GET');
is_deeply($r->[2], [$OK_NONE], 'status GET: exact JSON');

$r = req(HEAD => '/healthz/status');
is($r->[0], 200, 'status HEAD: 200');
headers_ok($r, 'application/json', length $OK_NONE, 'status HEAD');
is_deeply($r->[2], [], 'status HEAD: empty body');

# 405 for every other method, case-sensitive
for my $path ('/healthz/ping', '/healthz/status') {
    for my $m (qw(POST PUT DELETE OPTIONS PATCH TRACE CONNECT get head Get),
               '', 'GET ') {
        my $res = req($m => $path);
        is($res->[0], 405, "$path '$m': 405");
        is_deeply($res->[1], [ 'Content-Type' => 'text/plain',
            'Content-Length' => 18, 'Cache-Control' => 'no-store',
            'Allow' => 'GET, HEAD' ], "$path '$m': headers with Allow");
        is_deeply($res->[2], ['method not allowed'], "$path '$m': body");
    }
    my %env = (PATH_INFO => $path);
    is($app->(\%env)->[0], 405, "$path without REQUEST_METHOD: 405");
}
is(scalar @calls, 0, 'the wrapped app was never called for our paths');

# exact path match only; the query string is not part of PATH_INFO.
# Near misses under /healthz are ours (404: a typo in a probe must not
# reach RT, whose 302 counts as success and makes a session); case
# variants and other directories stay RT's.
my $NOT_FOUND = [ 'Content-Type' => 'text/plain', 'Content-Length' => 9,
                  'Cache-Control' => 'no-store' ];
for my $p ('/healthz', '/healthz/', '/healthz/ping/', '/healthz/PING',
           '/healthz/pin', '/healthz/ping?x=1', '/healthz/status.json',
           '/healthz/anything', "/healthz/ping\0", '/healthz//ping') {
    @calls = ();
    for my $m (qw(GET HEAD POST)) {
        my $res = req($m => $p);
        is($res->[0], 404, "'$p' $m: 404");
        is_deeply($res->[1], $NOT_FOUND, "'$p' $m: fixed headers");
        is_deeply($res->[2], $m eq 'HEAD' ? [] : ['not found'], "'$p' $m: body");
    }
    is(scalar @calls, 0, "'$p': the app was not called");
}
for my $p ('/HEALTHZ/PING', '//healthz/ping', '/healthzx', '/healthz.html',
           '/x/healthz/ping', '', '/') {
    @calls = ();
    my %env = (REQUEST_METHOD => 'GET', PATH_INFO => $p);
    my $res = $app->(\%env);
    is($res->[0], 299, "'$p' passes through");
    is(scalar @calls, 1, "'$p': app called once");
    is($calls[0][0], \%env, "'$p': the same env hash is handed on");
}
$r = req(GET => '/healthz/ping', QUERY_STRING => 'verbose=1');
is_deeply($r->[2], ['pong'], 'query string ignored');

# pass-through leaves env untouched and returns the response unchanged
{
    @calls = ();
    my $input = 'body';
    my %env = (REQUEST_METHOD => 'POST', PATH_INFO => '/Ticket/Display.html',
               'psgi.input' => \$input, QUERY_STRING => 'id=1',
               HTTP_COOKIE => 'x=y');
    my %copy = %env;
    my $res = $app->(\%env);
    is_deeply(\%env, \%copy, 'env untouched');
    is_deeply($res, [ 299, [ 'X-Inner' => 1 ], ['inner'] ], 'response unchanged');
    is(scalar @{ $calls[0] }, 1, 'the app got exactly one argument');
}

# streaming responses and context come back as they are
{
    my $stream = sub { my $responder = shift; $responder->([200, [], ['s']]) };
    my $sapp = RT::Extension::HealthEndpoint->wrap(sub { $stream });
    is($sapp->({ PATH_INFO => '/x', REQUEST_METHOD => 'GET' }), $stream,
       'streaming callback returned as is');
    my @list = RT::Extension::HealthEndpoint->wrap(sub { (1, 2, 3) })
        ->({ PATH_INFO => '/x' });
    is_deeply(\@list, [1, 2, 3], 'list context passes through');
    my $died = RT::Extension::HealthEndpoint->wrap(sub { die "inner died\n" });
    eval { $died->({ PATH_INFO => '/x' }) };
    is($@, "inner died\n", "the app's exception propagates unchanged");
}

# odd env values: no crash, a clear answer
for my $case ([ 'missing PATH_INFO', {} ],
              [ 'undef PATH_INFO', { PATH_INFO => undef } ],
              [ 'ref PATH_INFO', { PATH_INFO => ['/healthz/ping'] } ],
              [ 'huge PATH_INFO', { PATH_INFO => '/' x 1_000_000 } ]) {
    @calls = ();
    my ($name, $env) = @$case;
    is($app->({ REQUEST_METHOD => 'GET', %$env })->[0], 299, "$name: passes through");
}
is(req([] => '/healthz/ping')->[0], 405, 'ref REQUEST_METHOD: 405');
is(req(undef, '/healthz/ping')->[0], 405, 'undef REQUEST_METHOD: 405');
{
    # values perl holds as numbers, or as strings that were used as numbers,
    # are compared as their strings
    is($app->({ REQUEST_METHOD => 'GET', PATH_INFO => 42 })->[0], 299,
       'PATH_INFO a number: compared as "42", passed through');
    my $p = '/healthz/ping';
    { no warnings 'numeric'; my $n = $p + 0 }      # now also a number (0)
    is($app->({ REQUEST_METHOD => 'GET', PATH_INFO => $p })->[0], 200,
       'PATH_INFO used as a number before: its string still matches');
    my $m = 'GET';
    { no warnings 'numeric'; my $n = $m + 0 }
    is($app->({ REQUEST_METHOD => $m, PATH_INFO => '/healthz/ping' })->[0], 200,
       'REQUEST_METHOD used as a number before: still GET');
}
for my $bad (undef, 'x', [], \'x', sub { 1 }) {
    eval { $app->($bad) };
    like($@, qr/PSGI env must be a hash reference/, 'non-hash env croaks clearly');
}
eval { $app->() };
like($@, qr/PSGI env must be a hash reference/, 'no env croaks clearly');

# Answers are made once and handed out again while nobody holds or has
# changed them: whatever a server or middleware does with one must never
# show in a later one.
{
    my $want = sub { [ 200, [ 'Content-Type' => 'text/plain',
        'Content-Length' => 4, 'Cache-Control' => 'no-store' ], ['pong'] ] };
    my @mutations = (
        [ 'a header value set'      => sub { $_[0][1][1] = 'text/html' } ],
        [ 'a header changed in place' => sub { substr($_[0][1][5], 0, 2) = 'XX' } ],
        [ 'a header added'          => sub { push @{ $_[0][1] }, 'X-Extra' => 1 } ],
        [ 'the headers replaced'    => sub { $_[0][1] = [] } ],
        [ 'the body changed'        => sub { $_[0][2][0] = 'pang' } ],
        [ 'the body emptied (HEAD middleware)' => sub { $_[0][2] = [] } ],
        [ 'the status changed'      => sub { $_[0][0] = 500 } ],
        [ 'the status stringified'  => sub { my $x = "$_[0][0]" } ],
        [ 'Content-Length numified' => sub { my $x = $_[0][1][3] + 0 } ],
        [ 'a value made read-only'  => sub { Internals::SvREADONLY($_[0][1][1], 1) } ],
        [ 'the array blessed'       => sub { bless $_[0][1], 'X' } ],
        [ 'a value tied'            => sub { tie $_[0][1][5], 'TieOne' } ],
    );
    {
        package TieOne;
        sub TIESCALAR { bless [], shift } sub FETCH { 'tied' } sub STORE { }
    }
    for my $m (@mutations) {
        my ($what, $do) = @$m;
        for (1 .. 3) {
            my $r = req(GET => '/healthz/ping');
            $do->($r);
        }
        is_deeply(req(GET => '/healthz/ping'), $want->(), "after $what: the next ping is exact");
        my $held = req(GET => '/healthz/ping');
        my $next = req(GET => '/healthz/ping');
        is_deeply($next, $want->(), "$what, one answer still held: exact");
        isnt($next->[1], $held->[1], 'and not the held one');
        $do->($held);
        is_deeply(req(GET => '/healthz/ping'), $want->(), "$what to a held one: exact");
    }
    my $s1 = req(GET => '/healthz/status');
    my $s2 = req(HEAD => '/healthz/status');
    is_deeply($s1->[2], [$OK_NONE], 'status after all that: exact');
    is_deeply($s2->[2], [], 'HEAD status: empty');
}

# custom paths: no namespace unless one is named
{
    my @l;
    my $c = RT::Extension::HealthEndpoint->wrap($inner,
        ping_path => '/lb/alive', status_path => '/lb/ready',
        logger => sub { push @l, [@_] });
    is($c->({ REQUEST_METHOD => 'GET', PATH_INFO => '/lb/alive' })->[2][0],
       'pong', 'custom ping path');
    is($c->({ REQUEST_METHOD => 'GET', PATH_INFO => '/lb/ready' })->[2][0],
       $OK_NONE, 'custom status path');
    is($c->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/ping' })->[0],
       299, 'default path no longer ours');
    is($c->({ REQUEST_METHOD => 'GET', PATH_INFO => '/lb/x' })->[0],
       299, 'custom paths without a namespace: near misses are RT\'s');
    my $n = RT::Extension::HealthEndpoint->wrap($inner,
        ping_path => '/lb/alive', status_path => '/lb/ready', namespace => '/lb/');
    is($n->({ REQUEST_METHOD => 'GET', PATH_INFO => '/lb/x' })->[0], 404,
       'namespace /lb/: /lb/x is 404');
    is($n->({ REQUEST_METHOD => 'GET', PATH_INFO => '/lb' })->[0], 404, '/lb too');
    is($n->({ REQUEST_METHOD => 'GET', PATH_INFO => '/lbx' })->[0], 299, '/lbx is not');
    is($n->({ REQUEST_METHOD => 'POST', PATH_INFO => '/lb/ready' })->[0], 405,
       '405 only on the real paths');
    my $none = RT::Extension::HealthEndpoint->wrap($inner, namespace => '');
    is($none->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/x' })->[0], 299,
       "namespace '': none claimed, even with the default paths");
    for my $bad ('/NoAuth', '/noauth/health', '/REST/2.0', '/static', '/m', '/', 'healthz') {
        @l = ();
        my $b = RT::Extension::HealthEndpoint->wrap($inner, namespace => $bad,
            logger => sub { push @l, [@_] });
        like($l[0][1] // '', qr/HealthEndpoint_Namespace: invalid value/,
             "namespace '$bad' refused at startup");
        is($b->({ REQUEST_METHOD => 'GET', PATH_INFO => "$bad/x" })->[0], 299,
           "and RT keeps $bad");
    }
    my $allow = RT::Extension::HealthEndpoint->wrap($inner, allow_from => '10.0.0.0/8');
    is($allow->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/x',
                  REMOTE_ADDR => '192.0.2.1' })->[0], 403, 'outside the allowlist: 403 first');
    is($allow->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/x',
                  REMOTE_ADDR => '10.0.0.1' })->[0], 404, 'inside: 404');
}

# an SQLite file is the simplest real database: ok, then fail once it is gone
subtest 'SQLite: ok, then fail once the file is gone' => sub {
    my ($why, $fatal) = unavailable('SQLite',
        [ sub { eval { require DBD::SQLite; 1 } || find_binary('sqlite3') },
          'DBD::SQLite or the sqlite3 command, to create a test database' ]);
    return fail("required under CI=true: $why") if $fatal;
    plan skip_all => $why if defined $why;
    my $dir = tempdir(CLEANUP => 1);
    my $file = make_sqlite("$dir/rt.db");
    my @l;
    my $s = RT::Extension::HealthEndpoint->wrap($inner, cache_seconds => 0,
        db => { type => 'SQLite', name => $file }, logger => sub { push @l, [@_] });
    my $res = $s->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/status' });
    is($res->[0], 200, 'SQLite ok: 200');
    is($res->[2][0], '{"checks":{"database":"ok","redis":"skipped"},"status":"ok"}',
       'SQLite ok: body');
    unlink $file;
    $res = $s->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/status' });
    is($res->[0], 503, 'SQLite file gone: 503');
    is($res->[2][0], '{"checks":{"database":"fail","redis":"skipped"},"status":"fail"}',
       'SQLite file gone: body has fixed tokens only');
    ok(!-e $file, 'the check did not create the file');
    is(scalar @l, 1, 'one log line for the failure');
    is($l[0][0], 'error', 'logged at error level');
    like($l[0][1], qr/database check failed \(SQLite, [\d.]+ s\): .*\Q$file\E/,
         'the log names the check, the time and the reason');
    $res = $s->({ REQUEST_METHOD => 'HEAD', PATH_INFO => '/healthz/status' });
    is($res->[0], 503, 'HEAD keeps the status');
    is_deeply($res->[2], [], 'HEAD: empty body');
    is($res->[1][3], 64, 'HEAD: Content-Length of the GET body');
};
is(scalar @log, 0, 'nothing logged for the clean requests');

done_testing;
