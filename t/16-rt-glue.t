# How PSGIWrap maps RT's config onto the core.  RT itself is exercised in
# t/8x-rt-*.t; here a minimal RT::Config stand-in returns values the way
# RT->Config->Get does (a hash option is a hashref in scalar context).
use strict;
use warnings;
use Test::More;

my (%config, @logged);
{
    package RT;
    our $VarPath = '/var/lib/rt-test';
    sub Config { 'RT::Config' }
    sub Logger { 'RT::TestLogger' }
    package RT::Config;
    sub Get {
        my ($self, $name) = @_;
        my $v = $config{$name};
        return wantarray ? (ref $v eq 'HASH' ? %$v : ($v)) : $v;
    }
    package RT::TestLogger;
    sub log { my ($self, %m) = @_; push @logged, [ $m{level}, $m{message} ] }
}
use RT::Extension::HealthEndpoint;

my $inner = sub { [ 299, [], ['inner'] ] };

sub options {
    %config = @_;
    @logged = ();
    return { RT::Extension::HealthEndpoint->_options_from_rt };
}

my $o = options(DatabaseType => 'Pg', DatabaseHost => 'db.example',
    DatabasePort => 5433, DatabaseName => 'rt5', DatabaseUser => 'rt_user',
    DatabasePassword => 'pw', DatabaseExtraDSN => { sslmode => 'require' },
    HealthEndpoint_Timeout => 1.5, HealthEndpoint_PingPath => '/lb');
is_deeply($o->{db}, { type => 'Pg', host => 'db.example', port => 5433,
    name => 'rt5', user => 'rt_user', password => 'pw',
    extra => { sslmode => 'require' } }, 'database settings mapped');
is($o->{timeout}, 1.5, 'timeout');
is($o->{ping_path}, '/lb', 'ping path');
ok(!exists $o->{status_path}, 'unset options are left to the defaults');
ok(!exists $o->{redis} && !defined $o->{check_redis},
   'no Redis session class: no redis hash, so the check is off');

$o = options(DatabaseType => 'SQLite', DatabaseName => 'rt4.db');
is($o->{db}{name}, '/var/lib/rt-test/rt4.db', 'relative SQLite name under VarPath');
$o = options(DatabaseType => 'SQLite', DatabaseName => '/srv/rt.db');
is($o->{db}{name}, '/srv/rt.db', 'absolute SQLite name kept');

# what the wrapper makes of it: the Redis check on or off
sub redis_enabled {
    my $o = options(@_);
    my $app = RT::Extension::HealthEndpoint->wrap($inner, %$o);
    return RT::Extension::HealthEndpoint::_effective_config($app)->{redis_enabled};
}
for my $class ('Apache::Session::Redis', 'Apache::Session::Browseable::Redis') {
    $o = options(WebSessionClass => $class,
        WebSessionProperties => { server => '10.0.0.5:6380', password => 'x' });
    is_deeply($o->{redis}, { server => '10.0.0.5:6380', password => 'x' },
              "$class: WebSessionProperties used");
    is(redis_enabled(WebSessionClass => $class), 1, "$class: redis auto-detected");
}
is(redis_enabled(), 0, 'no Redis session class: redis off');
is(redis_enabled(WebSessionClass => 'Apache::Session::Redis',
                 HealthEndpoint_CheckRedis => 0), 0,
   'CheckRedis 0 wins over auto-detection');
is(redis_enabled(HealthEndpoint_CheckRedis => 1), 1,
   'CheckRedis 1 without a Redis session class');
$o = options(HealthEndpoint_CheckRedis => 1);
is_deeply($o->{redis}, {}, 'then the Redis.pm defaults apply');
is(redis_enabled(WebSessionClass => 'Apache::Session::Redis',
                 HealthEndpoint_CheckRedis => 'on'), 1,
   'invalid CheckRedis: auto-detection (on)');
like($logged[0][1], qr/HealthEndpoint_CheckRedis: invalid value 'on'.*auto-detection \(on\)/,
     'and logged, once');
is(scalar(grep { $_->[1] =~ /CheckRedis/ } @logged), 1, 'once');
is(redis_enabled(HealthEndpoint_CheckRedis => 'yes'), 0,
   'invalid CheckRedis, no Redis sessions: off');
like($logged[0][1], qr/auto-detection \(off\)/, 'and says so');

# Only the keys that say where Redis is: the rest tunes RT's own client,
# and none can reach the internal redis_auto / check_redis
$o = options(WebSessionClass => 'Apache::Session::Redis',
    WebSessionProperties => { server => '10.0.0.5:6380', reconnect => 60,
                              every => 1000, auto => 0, enabled => 0 });
is_deeply($o->{redis}, { server => '10.0.0.5:6380' },
          "WebSessionProperties: only server, sock, password, ... are read");
is(redis_enabled(WebSessionClass => 'Apache::Session::Redis',
    WebSessionProperties => { enabled => 0, auto => 0, reconnect => 60 }), 1,
   'an "enabled" or "auto" key there cannot switch the check off');
is(scalar(grep { $_->[1] =~ /unknown setting/ } @logged), 0,
   'and nothing is logged for them');

# $HealthEndpoint_StateFile: relative to what? The default instead.
{
    local $RT::MasonDataDir = '/var/cache/rt-test/mason_data';
    for my $bad ('healthendpoint.state', '') {
        $o = options(HealthEndpoint_StateFile => $bad);
        is($o->{state_file}, '/var/cache/rt-test/mason_data/healthendpoint.state',
           "StateFile '$bad': the default is used");
        like(join("\n", map { $_->[1] } @logged),
             qr/\$HealthEndpoint_StateFile '\Q$bad\E' is not an absolute path; using /,
             'and RT\'s log names the option');
    }
    $o = options(HealthEndpoint_StateFile => '/srv/rt/he.state');
    is($o->{state_file}, '/srv/rt/he.state', 'an absolute StateFile is used');
}

$o = options(DatabaseType => 'Oracle');
is(ref $o->{db_check}, 'CODE', 'Oracle: checked through DBI');

# $HealthEndpoint_AllowFrom as admins write it, through RT's config
for my $case (
    [ '10.0.0.0/8, 192.168.0.0/16' => '10.1.1.1' => 200, '203.0.113.66' => 403 ],
    [ ['192.168.1.0/255.255.255.0', '::1'] => '192.168.1.9' => 200, '::2' => 403 ],
    [ '10.0.0.0/33' => '10.0.0.1' => 403, '203.0.113.66' => 403 ],
    [ { '10.0.0.0/8' => 1 } => '10.0.0.1' => 403, '127.0.0.1' => 403 ],
    [ undef, '203.0.113.66' => 200, '127.0.0.1' => 200 ],
) {
    my ($value, %probe) = @$case;
    %config = (HealthEndpoint_AllowFrom => $value);
    @logged = ();
    my $app = RT::Extension::HealthEndpoint->PSGIWrap($inner);
    my $shown = ref $value eq 'ARRAY' ? "[@$value]" : ref $value ? 'a hash'
              : defined $value ? "'$value'" : 'undef';
    for my $addr (sort keys %probe) {
        is($app->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/ping',
                    REMOTE_ADDR => $addr })->[0], $probe{$addr},
           "AllowFrom $shown from RT's config: $addr gets $probe{$addr}");
    }
    if (grep { $_ == 403 } values %probe and !grep { $_ == 200 } values %probe) {
        ok(grep({ $_->[1] =~ /no valid entry; every client gets 403/ } @logged),
           "AllowFrom $shown: RT's log says every client is denied");
    }
}

# PSGIWrap end to end with this config: answers, logs through RT->Logger
%config = (DatabaseType => 'SQLite', DatabaseName => '/nonexistent/rt.db',
           HealthEndpoint_CacheSeconds => 0, HealthEndpoint_Timeout => 'x');
@logged = ();
my $app = RT::Extension::HealthEndpoint->PSGIWrap($inner);
like($logged[0][1], qr/HealthEndpoint_Timeout: invalid value 'x'/, 'config error in RT log');
is($app->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/ping' })->[2][0], 'pong', 'ping');
my $r = $app->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/status' });
is($r->[0], 503, 'status 503 without the database');
is($logged[-1][0], 'error', 'failure at error level');
like($logged[-1][1], qr/database check failed \(SQLite/, 'failure in RT log');

# PSGIWrap never dies: a broken wrapper leaves RT running without it
{
    no warnings 'redefine';
    local *RT::Extension::HealthEndpoint::wrap = sub { die "broken\n" };
    @logged = ();
    my $same = RT::Extension::HealthEndpoint->PSGIWrap($inner);
    is($same, $inner, 'the app is returned unwrapped');
    like($logged[0][1], qr/disabled, the wrapped app is used as is: broken/, 'and why is logged');
    local *RT::Extension::HealthEndpoint::wrap
        = sub { die "RT::Extension::HealthEndpoint: wrap: bad\n" };
    @logged = ();
    RT::Extension::HealthEndpoint->PSGIWrap($inner);
    is($logged[0][1], 'RT::Extension::HealthEndpoint: disabled, the wrapped '
       . 'app is used as is: wrap: bad', 'the prefix once, no newline');
}
done_testing;
