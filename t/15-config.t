# Options: every invalid value is logged naming the option and the value,
# and the default stays; the allowlist; the per-process result cache.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(sleep);
use lib 't/lib';
use HETest::Servers qw(make_sqlite);
use RT::Extension::HealthEndpoint;

my $inner = sub { [ 299, [], ['inner'] ] };
my %built = map { $_ => 1 } RT::Extension::HealthEndpoint::backends();

sub build {
    my @log;
    my $app = RT::Extension::HealthEndpoint->wrap($inner, @_,
        logger => sub { push @log, [@_] });
    return ($app, RT::Extension::HealthEndpoint::_effective_config($app), \@log);
}

sub get {
    my ($app, $path, %env) = @_;
    return $app->({ REQUEST_METHOD => 'GET', PATH_INFO => $path, %env });
}

my ($app, $cfg, $log) = build();
is_deeply([ @$cfg{qw(ping_path status_path timeout cache_seconds)} ],
          [ '/healthz/ping', '/healthz/status', 2, 1 ], 'defaults');
is(scalar @$log, 0, 'defaults log nothing');

my @invalid = (
    [ ping_path => 'healthz', 'HealthEndpoint_PingPath', ping_path => '/healthz/ping' ],
    [ ping_path => '/a b', 'HealthEndpoint_PingPath', ping_path => '/healthz/ping' ],
    [ ping_path => '/a?b', 'HealthEndpoint_PingPath', ping_path => '/healthz/ping' ],
    [ ping_path => '', 'HealthEndpoint_PingPath', ping_path => '/healthz/ping' ],
    [ status_path => "/x\n", 'HealthEndpoint_StatusPath', status_path => '/healthz/status' ],
    [ timeout => 'abc', 'HealthEndpoint_Timeout', timeout => 2 ],
    [ timeout => 0, 'HealthEndpoint_Timeout', timeout => 2 ],
    [ timeout => -1, 'HealthEndpoint_Timeout', timeout => 2 ],
    [ timeout => 'nan', 'HealthEndpoint_Timeout', timeout => 2 ],
    [ timeout => 'inf', 'HealthEndpoint_Timeout', timeout => 2 ],
    [ timeout => '0x10', 'HealthEndpoint_Timeout', timeout => 2 ],
    [ timeout => '2s', 'HealthEndpoint_Timeout', timeout => 2 ],
    [ timeout => 100000, 'HealthEndpoint_Timeout', timeout => 2 ],
    [ cache_seconds => -0.5, 'HealthEndpoint_CacheSeconds', cache_seconds => 1 ],
    [ cache_seconds => 'soon', 'HealthEndpoint_CacheSeconds', cache_seconds => 1 ],
    [ check_redis => 'yes', 'HealthEndpoint_CheckRedis', redis_enabled => 0 ],
    [ check_redis => 2, 'HealthEndpoint_CheckRedis', redis_enabled => 0 ],
);
for my $case (@invalid) {
    my ($key, $value, $option, $field, $default) = @$case;
    my ($a, $c, $l) = build($key => $value);
    (my $shown = $value) =~ s/[^\x20-\x7e]/?/g;
    is($c->{$field}, $default, "$key '$value': default kept");
    is(scalar @$l, 1, "$key '$value': one message");
    is($l->[0][0], 'error', "$key '$value': at error level");
    like($l->[0][1], qr/^RT::Extension::HealthEndpoint: \Q$option\E: invalid value '\Q$shown\E'/,
         "$key '$value': message names option and value");
    is(get($a, '/healthz/ping')->[0], 200, "$key '$value': still answers");
}

# fractions are allowed
($app, $cfg, $log) = build(timeout => '0.25', cache_seconds => '0.5');
is($cfg->{timeout}, 0.25, 'fractional timeout');
is($cfg->{cache_seconds}, 0.5, 'fractional cache');
($app, $cfg, $log) = build(cache_seconds => 0);
is($cfg->{cache_seconds}, 0, 'cache 0 turns it off');
is(scalar @$log, 0, 'valid values log nothing');

# both paths equal: both back to the defaults
($app, $cfg, $log) = build(ping_path => '/same', status_path => '/same');
is_deeply([ @$cfg{qw(ping_path status_path)} ], [ '/healthz/ping', '/healthz/status' ],
          'equal paths: defaults');
like($log->[0][1], qr/PingPath and HealthEndpoint_StatusPath are both '\/same'/,
     'equal paths: logged');

# unknown database type: fail, logged at startup and when checked
($app, $cfg, $log) = build(db => { type => 'Informix' }, cache_seconds => 0);
like($log->[0][1], qr/DatabaseType: invalid value 'Informix'/, 'unknown type logged');
my $r = get($app, '/healthz/status');
is($r->[0], 503, 'unknown type: 503');
is($r->[2][0], '{"checks":{"database":"fail","redis":"skipped"},"status":"fail"}',
   'unknown type: database fail');

# Oracle goes through a Perl callback, given the seconds left; it runs in
# the checker's child process, so it reports through a file
{
    my $dir = tempdir(CLEANUP => 1);
    my ($a) = build(timeout => 1.5, cache_seconds => 0, db => { type => 'Oracle' },
                    db_check => sub {
                        open my $fh, '>', "$dir/left" or die; print $fh $_[0]; 1 });
    is(get($a, '/healthz/status')->[0], 200, 'db_check true: ok');
    open my $fh, '<', "$dir/left" or die "the callback did not run: $!";
    my $got = <$fh>;
    ok($got > 0.5 && $got <= 1.5, "db_check got the time left ($got)");
    # the answer never waits past the deadline for a DBI check, and a true
    # that comes too late is a failure (the checker then stops the run, or
    # the child says it answered too late: both are logged as fail)
    ($a, undef, my $late) = build(timeout => 0.5, cache_seconds => 0,
        db => { type => 'Oracle' }, db_check => sub { sleep 3; 1 });
    my $t0 = Time::HiRes::time();
    is(get($a, '/healthz/status')->[0], 503, 'db_check true after 3 s, timeout 0.5: 503');
    cmp_ok(Time::HiRes::time() - $t0, '<', 2, 'answered without waiting for it');
    ($a, undef, $late) = build(timeout => 0.5, cache_seconds => 0,
        db => { type => 'Oracle' }, db_check => sub { sleep 0.6; 1 });
    is(get($a, '/healthz/status')->[0], 503, 'db_check true a little late: 503');
    # the late answer is logged by a later request, once the run has ended
    for (1 .. 30) {
        last if grep { $_->[1] =~ /answered too late|the check was stopped/ } @$late;
        Time::HiRes::sleep(0.1);
        get($a, '/healthz/status');
    }
    like(join("\n", map { $_->[1] } @$late),
         qr/database check failed .*(?:answered too late|the check was stopped)/,
         'and logged as a failure');
    ($a, undef, my $l) = build(cache_seconds => 0, db => { type => 'Oracle' },
                               db_check => sub { die "ORA-12541: no listener\n" });
    is(get($a, '/healthz/status')->[0], 503, 'db_check dying: fail');
    like($l->[-1][1], qr/database check failed \(Oracle.*ORA-12541/, 'its error is logged');
}

# a relative SQLite name is resolved once, at wrap, and the log says to what
{
    require Cwd;
    my $cwd = Cwd::getcwd();
    ($app, $cfg, $log) = build(db => { type => 'SQLite', name => 'rt.db' });
    my ($line) = grep { $_->[1] =~ /resolved to/ } @$log;
    like($line->[1] // '', qr/DatabaseName 'rt\.db' for SQLite resolved to '\Q$cwd\E\/rt\.db'/,
         'relative SQLite name resolved and logged');
    is($line->[0], 'info', 'at info level');
}

# values that cannot be C strings are refused, not truncated
($app, $cfg, $log) = build(ping_path => "/a\0b");
is($cfg->{ping_path}, '/healthz/ping', 'NUL byte in a value: default kept');
like($log->[0][1], qr/NUL byte/, 'NUL byte logged');

# redis settings
($app, $cfg, $log) = build(redis => { server => '[::1]:6390', database => 3,
                                      sentinels => ['10.0.0.1', '10.0.0.2:26380'],
                                      service => 'mymaster' });
is($cfg->{redis_enabled}, 1, 'a redis hash turns the check on');
is($cfg->{redis_server}, '::1:6390', 'IPv6 server parsed');
is($cfg->{redis_database}, 3, 'database');
is($cfg->{redis_sentinels}, 2, 'sentinels');
is(scalar(grep { $_->[1] !~ /this build has no Redis backend/ } @$log), 0,
   'valid redis settings log nothing');
($app, $cfg, $log) = build(redis => { server => 'host:99999' }, check_redis => 0);
is($cfg->{redis_enabled}, 0, 'check_redis 0 wins');
($app, $cfg, $log) = build(redis => { server => 'host:99999' }, cache_seconds => 0);
like($log->[0][1], qr/WebSessionProperties\{server\}: invalid value 'host:99999'.*will report fail/,
     'bad server logged, naming the sub-option');
$r = get($app, '/healthz/status');
is($r->[2][0], '{"checks":{"database":"skipped","redis":"fail"},"status":"fail"}',
   'bad server: fail, not some other Redis on the default port');
like($log->[-1][1], $built{Redis} ? qr/redis check failed .*setting is invalid/
                                   : qr/redis check failed .*no Redis backend/,
     'and why');
($app, $cfg, $log) = build(redis => { database => 'two' });
like($log->[0][1], qr/WebSessionProperties\{database\}: invalid value 'two'/,
     'bad redis database logged');

# wrong option types from Perl
($app, $cfg, $log) = build(db => 'Pg');
like($log->[0][1], qr/db: expected a hash reference/, 'db must be a hash');
eval { RT::Extension::HealthEndpoint->wrap($inner, bogus => 1) };
like($@, qr/unknown option 'bogus'/, 'unknown wrap option croaks');
eval { RT::Extension::HealthEndpoint->wrap('not code') };
like($@, qr/code reference/, 'app must be code');
eval { RT::Extension::HealthEndpoint->wrap($inner, logger => 'x') };
like($@, qr/logger must be a code reference/, 'logger must be code');

# a value whose stringification dies: wrap dies, and frees what it built
{
    package HETest15::Dies;
    use overload '""' => sub { die "no string\n" };
    package HETest15::App;
    our $gone = 0;
    sub DESTROY { $gone++ }
}
for my $n (1 .. 2) {
    my $app = bless sub { [200, [], [$n]] }, 'HETest15::App';
    eval { RT::Extension::HealthEndpoint->wrap($app, logger => sub { },
               timeout => bless({}, 'HETest15::Dies')) };
    like($@, qr/no string/, "a dying value: wrap dies ($n)");
}
is($HETest15::App::gone, 2, 'and the app and the handler are freed');

# a logger that dies does not break the request, and $@ is kept
{
    my $a = RT::Extension::HealthEndpoint->wrap($inner, cache_seconds => 0,
        db => { type => 'Informix' }, logger => sub { die "logger broke\n" });
    $@ = 'before';
    my $res = get($a, '/healthz/status');
    is($res->[0], 503, 'a dying logger does not break the answer');
    is($@, 'before', '$@ preserved');
    # nor does it break wrap, where bad values are logged
    my @warned;
    local $SIG{__WARN__} = sub { push @warned, @_ };
    my $w = eval { RT::Extension::HealthEndpoint->wrap($inner,
        redis => 'not a hash', logger => sub { die "logger broke\n" }) };
    ok($w, 'a logger that dies while wrap logs: wrap still returns');
    like(join('', @warned), qr/redis: expected a hash reference.*logger failed: logger broke/s,
         'and the message goes to warn');
}

# allowlist: 403 and nothing checked for others
{
    my $dir = tempdir(CLEANUP => 1);
    ($app, $cfg, $log) = build(allow_from => ['127.0.0.0/8', '2001:db8::/32'],
        cache_seconds => 0, db => { type => 'SQLite', name => "$dir/none.db" });
    is($cfg->{allow_from}, 2, 'two CIDRs');
    for my $case ([ '127.0.0.1', 503 ], [ '127.9.9.9', 503 ],
                  [ '::ffff:127.0.0.1', 503 ], [ '2001:db8::1', 503 ],
                  [ '10.0.0.1', 403 ], [ '2001:db9::1', 403 ], [ '', 403 ],
                  [ 'junk', 403 ], [ undef, 403 ]) {
        my ($addr, $want) = @$case;
        my $before = @$log;
        my $res = get($app, '/healthz/status', REMOTE_ADDR => $addr);
        is($res->[0], $want, 'status from ' . ($addr // 'undef') . ": $want");
        if ($want == 403) {
            is_deeply($res->[2], ['forbidden'], 'fixed 403 body');
            is(scalar @$log, $before, 'nothing checked, nothing logged');
        }
    }
    is(get($app, '/healthz/ping', REMOTE_ADDR => '10.1.1.1')->[0], 403, 'ping 403 too');
    is(get($app, '/other', REMOTE_ADDR => '10.1.1.1')->[0], 299,
       'other paths are not filtered');
    ($app, $cfg, $log) = build(allow_from => ['10.0.0.0/33', 'x']);
    is(scalar(grep { /invalid value/ } map { $_->[1] } @$log), 2, 'bad CIDRs logged');
    is($cfg->{allow_from}, 0, 'and dropped');
    like($log->[-1][1], qr/AllowFrom: no valid entry; every client gets 403/,
         'an allowlist without a valid entry is said to deny everyone');
    is(get($app, '/healthz/ping', REMOTE_ADDR => '127.0.0.1')->[0], 403,
       'and does: it fails closed');
}

# what admins write: one string, commas and/or blanks, netmasks; each bad
# entry dropped with a message; nothing valid: nobody gets in
{
    my @cases = (
        [ '10.0.0.0/8, 192.168.0.0/16' => [ '10.1.2.3' => 200, '192.168.9.9' => 200, '11.0.0.1' => 403 ] ],
        [ '10.0.0.0/8 192.168.0.0/16 ' => [ '192.168.0.1' => 200, '203.0.113.66' => 403 ] ],
        [ '192.168.1.0/255.255.255.0' => [ '192.168.1.77' => 200, '192.168.2.1' => 403 ] ],
        [ '10.0.0.0/255.0.255.0' => [ '10.0.0.1' => 403 ], 'a mask with a hole' ],
        [ ['127.0.0.1 ', '::1'] => [ '127.0.0.1' => 200, '::1' => 200, '::2' => 403 ] ],
        [ '10.0.0.0/33' => [ '203.0.113.66' => 403, '10.0.0.1' => 403 ], 'typo' ],
        [ 'rt.example.com' => [ '203.0.113.66' => 403 ], 'a host name' ],
        [ { '10.0.0.0/8' => 1 } => [ '10.0.0.1' => 403 ], 'a hash' ],
        [ '127.0.0.1%eth0' => [ '127.0.0.1' => 403 ], 'a zone on IPv4' ],
        [ '2001:db8::1%eth0' => [ '2001:db8::1' => 403 ], 'a zone off link-local' ],
        [ 'fe80::1%eth0' => [ 'fe80::1' => 200, 'fe80::1%eth0' => 200, 'fe80::2' => 403 ] ],
        [ '10.0.0.0/33, 192.0.2.0/24' => [ '192.0.2.5' => 200, '10.0.0.1' => 403 ], 'mixed' ],
        [ '' => [ '203.0.113.66' => 200 ], 'empty: no allowlist' ],
        [ [] => [ '203.0.113.66' => 200 ], 'empty list: no allowlist' ],
    );
    for my $case (@cases) {
        my ($value, $probes, $what) = @$case;
        my $name = $what // (ref $value ? "[@$value]" : "'$value'");
        ($app, $cfg, $log) = build(allow_from => $value);
        while (my ($addr, $want) = splice @$probes, 0, 2) {
            is(get($app, '/healthz/ping', REMOTE_ADDR => $addr)->[0], $want,
               "allow_from $name: $addr gets $want");
        }
        my @errors = grep { $_->[0] eq 'error' } @$log;
        my ($list) = grep { $_->[1] =~ /AllowFrom: allowing/ } @$log;
        if ($cfg->{allow_from}) {
            ok($list, "$name: the resulting list is logged once")
                and note $list->[1];
        }
    }
    ($app, $cfg, $log) = build(allow_from => '10.0.0.0/8,192.168.1.0/255.255.255.0');
    like(join("\n", map { $_->[1] } @$log),
         qr{AllowFrom: allowing 10\.0\.0\.0/8, 192\.168\.1\.0/24$}m,
         'the list as it is used');
}

# wrap's arguments: a clear message naming what is wrong
{
    my $blessed = bless sub { [ 200, [], ['blessed'] ] }, 'My::App';
    my $a = RT::Extension::HealthEndpoint->wrap($blessed);
    is($a->({ REQUEST_METHOD => 'GET', PATH_INFO => '/x' })->[2][0], 'blessed',
       'a blessed code reference is a PSGI app');
    eval { RT::Extension::HealthEndpoint->wrap($inner, logger => 'x', timeout => 'bad') };
    like($@, qr/wrap: logger must be a code reference/,
         'a bad logger with another bad option: the logger is named');
    eval { RT::Extension::HealthEndpoint->wrap($inner, db_check => {}) };
    like($@, qr/wrap: db_check must be a code reference/, 'db_check named');
    eval { RT::Extension::HealthEndpoint->wrap({}) };
    like($@, qr/wrap: the PSGI app must be a code reference/, 'the app named');
    ($app, $cfg, $log) = build(timeout => '0.000001');
    like($log->[0][1], qr/HealthEndpoint_Timeout: 1e-06 s is below 10 ms/,
         'a timeout below 10 ms is warned about');
    is($log->[0][0], 'warning', 'as a warning');
    ($app, $cfg, $log) = build(db => { type => 'Pg', hots => 'db' },
                               redis => { sever => 'x:1' });
    like(join("\n", map { $_->[1] } @$log), qr/db\.hots: unknown setting ignored/,
         'an unknown db key is logged');
    like(join("\n", map { $_->[1] } @$log), qr/WebSessionProperties\{sever\}: unknown setting/,
         'an unknown redis key is logged');
    ($app, $cfg, $log) = build(redis => { enabled => 0, auto => 0 });
    is($cfg->{redis_enabled}, 1, 'redis keys cannot reach the internal enabled/auto');
    is(scalar(grep { $_->[1] =~ /WebSessionProperties\{(?:auto|enabled)\}: unknown setting/ } @$log),
       2, 'they are unknown settings, logged');
}

# the cache: a result younger than CacheSeconds is answered as it is; one
# younger than CacheSeconds + Timeout is answered at once and refreshed in
# the background; a forked process has its own (private) state
{
    my $dir = tempdir(CLEANUP => 1);
    my $file = "$dir/rt.db";
    # an SQLite file or, in a build without SQLite, the DBI callback path
    # looking at a file
    my @db = (db => { type => 'SQLite', name => $file });
    if ($built{SQLite}) {
        make_sqlite($file);
    } else {
        open my $fh, '>', $file or die "$file: $!";
        @db = (db => { type => 'Oracle' }, db_check => sub { -e $file });
    }
    ($app, $cfg, $log) = build(cache_seconds => 1, timeout => 5, @db);
    is(get($app, '/healthz/status')->[0], 200, 'cache: first check ok');
    rename $file, "$file.away" or die;
    is(get($app, '/healthz/status')->[0], 200, 'cache: result reused');
    is(scalar @$log, 0, 'cache: nothing ran');

    pipe(my $rd, my $wr) or die;
    my $pid = fork;
    if (!$pid) {
        close $rd;
        print {$wr} get($app, '/healthz/status')->[0];
        close $wr;
        POSIX::_exit(0);
    }
    close $wr;
    my $child = <$rd>;
    waitpid $pid, 0;
    is($child, 503, 'a forked child does not reuse the parent\'s result');

    sleep 1.1;
    is(get($app, '/healthz/status')->[0], 200,
       'older than CacheSeconds: answered at once from the old result');
    my $code;
    for (1 .. 50) {         # the refresh runs in the checker; up to 5 s
        $code = get($app, '/healthz/status')->[0];
        last if $code == 503;
        sleep 0.1;
    }
    is($code, 503, 'and refreshed: the failure shows');
    is(scalar(grep { $_->[1] =~ /database check failed/ } @$log), 1,
       'the failure is logged once');
    is(get($app, '/healthz/status')->[0], 503, 'failure cached too');
    is(scalar(grep { $_->[1] =~ /database check failed/ } @$log), 1,
       'and not logged again');
}

done_testing;
