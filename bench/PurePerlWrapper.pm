package PurePerlWrapper;

# The baseline for bench/run: RT::Extension::HealthEndpoint's contract
# written the way a careful Perl programmer would write it, as a plain
# closure (no Plack::Middleware object, no method calls: that would only
# make the baseline slower and our ratios look better).
#
#   my $app = PurePerlWrapper->wrap($inner,
#       ping_path => '/healthz/ping', status_path => '/healthz/status',
#       timeout => 2, cache_seconds => 0,
#       db    => { type => 'Pg', host => ..., port => ..., name => ...,
#                  user => ..., password => ... },
#       redis => { server => '127.0.0.1:6379', password => ... },
#       logger => sub { my ($level, $message) = @_; ... });
#
# Same answers as the XS module: PATH_INFO compared exactly; GET and HEAD
# answered (HEAD without a body), any other method 405 with
# "Allow: GET, HEAD"; Content-Type, Content-Length and
# "Cache-Control: no-store" on every answer; anything else under the
# namespace (/healthz with the default paths) 404; everything else goes to
# the wrapped app with the same arguments and its response comes back as
# is.
# The status checks use DBI/DBD::Pg and Redis.pm, one after the other
# (plain Perl has no cheap way to run them at the same time), each with a
# fresh connection that is closed again, as the XS module does.
#
# Not a product: bench/ only.

use strict;
use warnings;

use Time::HiRes ();

my %DEFAULT = (ping_path => '/healthz/ping', status_path => '/healthz/status',
               timeout => 2, cache_seconds => 0);

sub wrap {
    my ($class, $app, %opt) = @_;
    die "PurePerlWrapper: wrap needs a code reference\n" unless ref $app eq 'CODE';
    %opt = (%DEFAULT, map { defined $opt{$_} ? ($_ => $opt{$_}) : () } keys %opt);

    my $ping   = $opt{ping_path};
    my $status = $opt{status_path};
    my $ns = $opt{namespace} // ($ping eq $DEFAULT{ping_path}
        && $status eq $DEFAULT{status_path} ? '/healthz' : '');
    my $logger = $opt{logger} || sub { warn "[$_[0]] $_[1]\n" };
    my $db_check    = _db_check($opt{db}, $opt{timeout});
    my $redis_check = _redis_check($opt{redis}, $opt{timeout});
    my $cache_for   = $opt{cache_seconds};
    my ($cached_at, $cached_pid, @cached);

    my $run_checks = sub {
        my $now = Time::HiRes::time();
        return @cached
            if $cache_for > 0 && defined $cached_at && $cached_pid == $$
            && $now >= $cached_at && $now - $cached_at < $cache_for;
        my @r;
        for my $c ([database => $db_check], [redis => $redis_check]) {
            my ($name, $check) = @$c;
            if (!$check) { push @r, 'skipped'; next }
            my $err = $check->();
            if (defined $err) {
                chomp $err;
                eval { $logger->('error', "PurePerlWrapper: $name check failed: $err") };
                push @r, 'fail';
            } else {
                push @r, 'ok';
            }
        }
        ($cached_at, $cached_pid, @cached) = (Time::HiRes::time(), $$, @r);
        return @r;
    };

    return sub {
        my $path = $_[0]{PATH_INFO};
        if (!defined $path || ($path ne $ping && $path ne $status)) {
            return $app->(@_) if $ns eq '' || !defined $path
                || rindex($path, $ns, 0) != 0
                || (length $path > length $ns
                    && substr($path, length $ns, 1) ne '/');
            my $m = $_[0]{REQUEST_METHOD} // '';
            return [404, ['Content-Type' => 'text/plain',
                          'Content-Length' => 9,
                          'Cache-Control' => 'no-store'],
                    $m eq 'HEAD' ? [] : ['not found']];
        }

        my $method = $_[0]{REQUEST_METHOD} // '';
        if ($method ne 'GET' && $method ne 'HEAD') {
            return [405, ['Content-Type' => 'text/plain',
                          'Content-Length' => 18,
                          'Cache-Control' => 'no-store',
                          'Allow' => 'GET, HEAD'],
                    ['method not allowed']];
        }
        if ($path eq $ping) {
            return [200, ['Content-Type' => 'text/plain',
                          'Content-Length' => 4,
                          'Cache-Control' => 'no-store'],
                    $method eq 'HEAD' ? [] : ['pong']];
        }
        my ($db, $redis) = $run_checks->();
        my $ok = $db ne 'fail' && $redis ne 'fail';
        my $body = qq({"checks":{"database":"$db","redis":"$redis"},)
                 . qq("status":") . ($ok ? 'ok' : 'fail') . '"}';
        return [$ok ? 200 : 503,
                ['Content-Type' => 'application/json',
                 'Content-Length' => length $body,
                 'Cache-Control' => 'no-store'],
                $method eq 'HEAD' ? [] : [$body]];
    };
}

# Each check returns undef when fine, else the reason.

sub _db_check {
    my ($db, $timeout) = @_;
    return undef unless $db && defined $db->{type};
    die "PurePerlWrapper: only the Pg database type is implemented\n"
        unless $db->{type} eq 'Pg';
    require DBI;
    require DBD::Pg;
    # libpq rounds connect_timeout up to 2 s (as the XS module's safety net)
    my $ct = int($timeout + 0.999);
    $ct = 2 if $ct < 2;
    my $dsn = 'dbi:Pg:' . join ';', map { "$_->[0]=$_->[1]" }
        grep { defined $_->[1] }
        [dbname => $db->{name}], [host => $db->{host}], [port => $db->{port}],
        [connect_timeout => $ct], [application_name => 'rt-healthendpoint-pp'];
    my %attr = (RaiseError => 1, PrintError => 0, AutoCommit => 1);
    return sub {
        my $ok = eval {
            my $dbh = DBI->connect($dsn, $db->{user}, $db->{password}, \%attr);
            my ($one) = $dbh->selectrow_array('SELECT 1');
            $dbh->disconnect;
            die "unexpected result from SELECT 1\n" unless defined $one && $one eq '1';
            1;
        };
        return $ok ? undef : ($@ || 'unknown error');
    };
}

sub _redis_check {
    my ($redis, $timeout) = @_;
    return undef unless $redis;
    require Redis;
    my %args = (
        server => $redis->{server} // '127.0.0.1:6379',
        reconnect => 0, cnx_timeout => $timeout,
        read_timeout => $timeout, write_timeout => $timeout,
        (defined $redis->{username} ? (username => $redis->{username}) : ()),
        (defined $redis->{password} ? (password => $redis->{password}) : ()),
    );
    return sub {
        my $ok = eval {
            my $r = Redis->new(%args);
            my $pong = $r->ping;
            $r->quit;
            die "unexpected reply to PING\n" unless defined $pong && $pong eq 'PONG';
            1;
        };
        return $ok ? undef : ($@ || 'unknown error');
    };
}

1;
