#!/usr/bin/perl
# The configuration snippets the documentation shows are the files in eg/
# that the tests run (t/88-nginx-fcgi.t, t/89-monitoring.t), byte for byte:
#
#   README.md   a fenced code block right after a line <!-- eg/FILE -->
#   the POD     the verbatim paragraphs (indented by 4 spaces) right after
#               a paragraph "=for comment eg/FILE"
#
# Every snippet file of eg/ is quoted in both.  And every probe timeout in
# those files is longer than $HealthEndpoint_Timeout's default: a worker
# waiting for a status check answers nothing else until it is done.
# No servers; no build needed.
use strict;
use warnings;
use Test::More;
use CPAN::Meta::YAML;
use FindBin;

my $ROOT = "$FindBin::Bin/..";
my $POD  = 'lib/RT/Extension/HealthEndpoint.pm';
my $DEFAULT_TIMEOUT = 2;    # $HealthEndpoint_Timeout's default, seconds

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', "$ROOT/$file" or die "$file: $!";
    local $/;
    return scalar <$fh>;
}

# the files the documentation must quote: everything in eg/ but the demo
# and the directory's own README
opendir my $dh, "$ROOT/eg" or die "eg: $!";
my @snippets = sort map { "eg/$_" }
    grep { -f "$ROOT/eg/$_" && !/^\./ && $_ ne 'demo' && $_ ne 'README' } readdir $dh;
closedir $dh;
ok(scalar(@snippets) >= 7, "eg/ has the snippet files (@snippets)");

# README.md: (marker line number, file, quoted text or undef + why)
sub readme_quotes {
    my @lines = split /\n/, slurp('README.md'), -1;
    my @q;
    for (my $i = 0; $i < @lines; $i++) {
        next unless $lines[$i] =~ /^<!--\s*(eg\/\S+)\s*-->\s*$/;
        my ($file, $at) = ($1, $i + 1);
        if ($i + 1 >= @lines || $lines[$i + 1] !~ /^(```+)[\w-]*\s*$/) {
            push @q, [$at, $file, undef, 'no ``` code block on the next line'];
            next;
        }
        my $fence = $1;
        my ($j, @body) = ($i + 2);
        push @body, $lines[$j++] while $j < @lines && $lines[$j] ne $fence;
        if ($j >= @lines) {
            push @q, [$at, $file, undef, 'code block not closed'];
            next;
        }
        push @q, [$at, $file, join('', map { "$_\n" } @body)];
        $i = $j;
    }
    return @q;
}

# The POD: the verbatim lines after "=for comment eg/FILE", up to the next
# paragraph that is not indented, with the 4-space indent taken off.
sub pod_quotes {
    my @lines = split /\n/, slurp($POD), -1;
    my @q;
    for (my $i = 0; $i < @lines; $i++) {
        next unless $lines[$i] =~ /^=for comment (eg\/\S+)\s*$/;
        my ($file, $at) = ($1, $i + 1);
        my $j = $i + 1;
        $j++ while $j < @lines && $lines[$j] eq '';
        my @body;
        while ($j < @lines && ($lines[$j] eq '' || $lines[$j] =~ /^\s/)) {
            push @body, $lines[$j++];
        }
        pop @body while @body && $body[-1] eq '';
        if (!@body) {
            push @q, [$at, $file, undef, 'no verbatim paragraph follows'];
            next;
        }
        my @bad = grep { $_ ne '' && !/^    / } @body;
        if (@bad) {
            push @q, [$at, $file, undef, "not indented by 4 spaces: '$bad[0]'"];
            next;
        }
        push @q, [$at, $file, join('', map { s/^    //r . "\n" } @body)];
        $i = $j - 1;
    }
    return @q;
}

for my $doc ([README => 'README.md', \&readme_quotes],
             [POD    => $POD, \&pod_quotes]) {
    my ($name, $path, $reader) = @$doc;
    subtest "$name quotes eg/ byte for byte" => sub {
        my @q = $reader->();
        my %quoted;
        for my $q (@q) {
            my ($at, $file, $text, $why) = @$q;
            $quoted{$file}++;
            my $what = "$path line $at: $file";
            if (!defined $text) {
                fail("$what: $why");
                next;
            }
            if (!-f "$ROOT/$file") {
                fail("$what: no such file");
                next;
            }
            my $want = slurp($file);
            if ($text eq $want) {
                pass($what);
            } else {
                fail("$what differs from the file");
                diag(first_difference($text, $want));
            }
        }
        ok($quoted{$_}, "$path quotes $_") for @snippets;
    };
}

sub first_difference {
    my ($got, $want) = @_;
    my @g = split /\n/, $got, -1;
    my @w = split /\n/, $want, -1;
    for my $n (0 .. ($#g > $#w ? $#g : $#w)) {
        my ($x, $y) = ($g[$n], $w[$n]);
        next if defined $x && defined $y && $x eq $y;
        return sprintf "first difference at line %d of the snippet:\n"
            . "  quoted: %s\n  file:   %s", $n + 1,
            map { defined $_ ? "'$_'" : '(none)' } $x, $y;
    }
    return 'they differ only in the final newline';
}

subtest 'probe timeouts are longer than the default $HealthEndpoint_Timeout' => sub {
    my %timeout = (
        'eg/haproxy.cfg'     => [ qr/^\s*timeout\s+check\s+(\d+(?:\.\d+)?)s\b/m ],
        'eg/check_http.txt'  => [ qr/^\S*check_http\b.*\s-t\s+(\d+)/m,
                                  qr/^\S*check_curl\b.*\s-t\s+(\d+)/m ],
        'eg/icinga2.conf'    => [ qr/^\s*vars\.http_timeout\s*=\s*(\d+)/m ],
        'eg/blackbox.yml'    => [ qr/^\s*timeout:\s*(\d+)s\b/m ],
    );
    for my $file (sort keys %timeout) {
        my $text = slurp($file);
        for my $re (@{ $timeout{$file} }) {
            my @t = $text =~ /$re/g;
            ok(@t, "$file sets a timeout ($re)") or next;
            cmp_ok($_, '>', $DEFAULT_TIMEOUT, "$file: timeout $_ s") for @t;
        }
    }
    my @modules = slurp('eg/blackbox.yml') =~ /^  (\w+):\s*$/mg;
    my @timeouts = slurp('eg/blackbox.yml') =~ /^    timeout:/mg;
    is(scalar(@timeouts), scalar(@modules), 'eg/blackbox.yml: a timeout for each module');
};

subtest 'eg/kubernetes.yml: ping for liveness, status for readiness' => sub {
    my $y = CPAN::Meta::YAML->read_string(slurp('eg/kubernetes.yml'))
        or return fail('eg/kubernetes.yml: ' . CPAN::Meta::YAML->errstr);
    my $k = $y->[0];
    my %path = (startupProbe => '/healthz/ping', livenessProbe => '/healthz/ping',
                readinessProbe => '/healthz/status');
    is_deeply([sort keys %$k], [sort keys %path], 'the three probes');
    for my $probe (sort keys %path) {
        my $p = $k->{$probe} or next;
        is($p->{httpGet}{path}, $path{$probe}, "$probe: $path{$probe}");
        like($p->{httpGet}{port}, qr/^\d+$/, "$probe: a port");
        cmp_ok($p->{timeoutSeconds} // 1, '>', $DEFAULT_TIMEOUT,
               "$probe: timeoutSeconds (Kubernetes' default is 1)");
    }
};

done_testing;
