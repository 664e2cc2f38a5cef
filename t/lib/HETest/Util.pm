package HETest::Util;

=head1 NAME

HETest::Util - call a wrapped RT::Extension::HealthEndpoint app and check its answer

=head1 SYNOPSIS

    use lib 't/lib';
    use HETest::Util qw(:all);

    # build the wrapped app (cache_seconds => 0 unless given), GET the
    # status path once, return what happened
    my $r = status_of(db => { $pg->db_config });
    $r->{code};        # 200 / 503
    $r->{json};        # decoded body (hash ref), undef if not JSON
    $r->{body};        # raw body
    $r->{headers};     # { lc name => value }
    $r->{log};         # [ [level, message], ... ] from the logger
    $r->{elapsed};     # seconds the call took

    expect_status($r, database => 'ok', redis => 'skipped', 'pg over TCP');
    logged_error($r, qr/database check failed.*password authentication/s,
                 'the reason is logged');

    # several requests against one app
    my $h = new_app(db => {...});
    my $r1 = probe($h);                                    # GET status
    my $r2 = probe($h, method => 'HEAD');
    my $r3 = probe($h, path => '/healthz/ping');

=head1 FUNCTIONS

=over

=item new_app(%wrap_options)

Wraps a tiny app (200 text/plain "app") with
C<< RT::Extension::HealthEndpoint->wrap >>, defaulting C<cache_seconds> to
0 and installing a logger that records into C<< $h->{log} >>.  Returns a
hash ref { app, log }.  Dies if wrap dies.

=item probe($h, %req)

Calls the app once.  %req: method (GET), path (/healthz/status), and any
further PSGI env keys.  Returns the result hash described above; its
C<log> holds only the entries logged during this call, C<all_log> all of
them so far.

=item status_of(%wrap_options)

new_app + probe of the status path; also returns C<wrap_log> (what wrap
itself logged).  Entries from wrap are included in C<log> too.

=item status_body($database, $redis)

The exact body expected for these two check results.

=item expect_status($r, database => X, redis => Y, [errors_ok => 1], $name)

One test: code 200 if no check is 'fail' else 503, the body exactly
C<status_body(X, Y)> (so no error text), Content-Type application/json,
Content-Length matching, Cache-Control no-store.  Unless errors_ok, a
result without failures must not have logged anything at level 'error'.
Prints the log on failure.

=item logged_error($r, qr/.../, $name)

One test: an entry at level 'error' matches the pattern.

=item no_error_logged($r, $name)

One test: nothing was logged at level 'error'.

=item describe($r)

A human-readable dump of a result, for diag.

=back

=cut

use strict;
use warnings;

use Exporter qw(import);
use JSON::PP ();
use Test::More ();
use Time::HiRes ();

use RT::Extension::HealthEndpoint;

our @EXPORT_OK = qw(new_app probe status_of status_body expect_status
                    logged_error no_error_logged describe psgi_env);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

sub psgi_env {
    my (%req) = @_;
    my $method = delete $req{method} // 'GET';
    my $path   = delete $req{path}   // '/healthz/status';
    open my $in, '<', \(my $empty = '');
    return {
        REQUEST_METHOD    => $method,
        PATH_INFO         => $path,
        SCRIPT_NAME       => '',
        REQUEST_URI       => $path,
        QUERY_STRING      => '',
        SERVER_NAME       => 'localhost',
        SERVER_PORT       => 80,
        SERVER_PROTOCOL   => 'HTTP/1.1',
        REMOTE_ADDR       => '127.0.0.1',
        HTTP_HOST         => 'localhost',
        'psgi.version'    => [1, 1],
        'psgi.url_scheme' => 'http',
        'psgi.input'      => $in,
        'psgi.errors'     => \*STDERR,
        'psgi.multithread'  => 0,
        'psgi.multiprocess' => 0,
        'psgi.run_once'     => 0,
        'psgi.nonblocking'  => 0,
        'psgi.streaming'    => 0,
        %req,
    };
}

sub new_app {
    my (%opt) = @_;
    my @log;
    my $app = RT::Extension::HealthEndpoint->wrap(
        sub { [200, ['Content-Type', 'text/plain'], ['app']] },
        cache_seconds => 0,
        logger => sub { push @log, [@_] },
        %opt,
    );
    return { app => $app, log => \@log };
}

sub probe {
    my ($h, %req) = @_;
    my $env = psgi_env(%req);
    my $before = @{ $h->{log} };
    my $t0 = Time::HiRes::time();
    my $res = $h->{app}->($env);
    my $elapsed = Time::HiRes::time() - $t0;

    my %r = (elapsed => $elapsed, raw => $res,
             log => [ @{ $h->{log} }[ $before .. $#{ $h->{log} } ] ],
             all_log => [ @{ $h->{log} } ]);
    if (ref $res ne 'ARRAY' || @$res != 3) {
        $r{error} = 'not a 3-element PSGI response';
        return \%r;
    }
    my ($code, $hdrs, $body) = @$res;
    $r{code} = $code;
    $r{header_list} = $hdrs;
    my %h;
    for (my $i = 0; $i < @$hdrs; $i += 2) {
        my $k = lc $hdrs->[$i];
        $r{duplicate_header} = $k if exists $h{$k};
        $h{$k} = $hdrs->[$i + 1];
    }
    $r{headers} = \%h;
    if (ref $body eq 'ARRAY') {
        $r{body} = join '', @$body;
    }
    elsif (ref $body && eval { $body->can('getline') }) {
        my $s = '';
        while (defined(my $l = $body->getline)) { $s .= $l }
        $body->close;
        $r{body} = $s;
    }
    else {
        $r{error} = 'body is neither an array nor a handle';
    }
    $r{json} = eval { JSON::PP->new->decode($r{body}) }
        if defined $r{body} && length $r{body};
    return \%r;
}

sub status_of {
    my (%opt) = @_;
    my $h = new_app(%opt);
    my @wrap_log = @{ $h->{log} };
    my $r = probe($h);
    $r->{wrap_log} = \@wrap_log;
    $r->{log} = [ @wrap_log, @{ $r->{log} } ];
    return $r;
}

sub status_body {
    my ($db, $redis) = @_;
    my $status = (grep { $_ eq 'fail' } $db, $redis) ? 'fail' : 'ok';
    return qq({"checks":{"database":"$db","redis":"$redis"},"status":"$status"});
}

sub describe {
    my ($r) = @_;
    my @l = (sprintf "code: %s  elapsed: %.3f s", $r->{code} // 'none',
                     $r->{elapsed} // 0);
    push @l, "error: $r->{error}" if $r->{error};
    push @l, "headers: " . join(', ', map { "$_: $r->{headers}{$_}" }
                                      sort keys %{ $r->{headers} || {} });
    push @l, "body: " . ($r->{body} // '(none)');
    push @l, "log: [$_->[0]] " . ($_->[1] // '') for @{ $r->{log} || [] };
    push @l, "log: (empty)" unless @{ $r->{log} || [] };
    return join "\n", @l;
}

sub _errors { grep { ($_->[0] // '') eq 'error' } @{ $_[0]{log} || [] } }

sub expect_status {
    my $r = shift;
    my $name = @_ % 2 ? pop : 'status';
    my (%e) = @_;
    my ($db, $redis) = @e{qw(database redis)};
    my $want_code = (grep { $_ eq 'fail' } $db, $redis) ? 503 : 200;
    my $want_body = status_body($db, $redis);
    my @problems;
    push @problems, $r->{error} if $r->{error};
    push @problems, "code $r->{code}, want $want_code"
        unless ($r->{code} // 0) == $want_code;
    push @problems, "body differs, want $want_body"
        unless defined $r->{body} && $r->{body} eq $want_body;
    my $h = $r->{headers} || {};
    push @problems, "Content-Type is not application/json"
        unless ($h->{'content-type'} // '') eq 'application/json';
    push @problems, "Content-Length does not match the body"
        unless defined $h->{'content-length'} && defined $r->{body}
            && $h->{'content-length'} == length $r->{body};
    push @problems, "Cache-Control is not no-store"
        unless ($h->{'cache-control'} // '') eq 'no-store';
    push @problems, "duplicate header $r->{duplicate_header}"
        if $r->{duplicate_header};
    if ($want_code == 200 && !$e{errors_ok}) {
        push @problems, "errors were logged" if _errors($r);
    }
    my $ok = Test::More::ok(!@problems, $name);
    Test::More::diag(join "\n", @problems, describe($r)) unless $ok;
    return $ok;
}

sub logged_error {
    my ($r, $re, $name) = @_;
    my $ok = Test::More::ok(
        scalar(grep { ($_->[1] // '') =~ $re } _errors($r)),
        $name // "an error matching $re was logged");
    Test::More::diag(describe($r)) unless $ok;
    return $ok;
}

sub no_error_logged {
    my ($r, $name) = @_;
    my $ok = Test::More::ok(!_errors($r), $name // 'no error logged');
    Test::More::diag(describe($r)) unless $ok;
    return $ok;
}

1;
